"""Markdown transcripts of closed sessions, written to a folder without ever half-writing a file."""

from __future__ import annotations

import glob
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ..records import SessionMessage, SessionMeta

__all__ = [
    "message_section",
    "remove_transcripts",
    "render_transcript",
    "transcript_filename",
    "transcript_header",
    "write_if_changed",
    "write_pieces_if_changed",
]

#: How many characters of the title make the file name (the id prefix follows).
_SLUG_LENGTH = 60
#: How many characters of the session id end the file name.
_ID_PREFIX_LENGTH = 8


def _slug(text: str | None) -> str:
    """Lower-case ASCII words joined by ``-`` (``"session"`` when nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words[:_SLUG_LENGTH].rstrip("-") or "session"


def transcript_filename(meta: SessionMeta) -> str:
    """``<title slug>-<id prefix>.md``, e.g. ``plan-a-weekend-in-lisbon-3f2a9c1d.md``."""
    return f"{_slug(meta.title)}-{meta.id[:_ID_PREFIX_LENGTH]}.md"


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_transcript(meta: SessionMeta, messages: Sequence[SessionMessage]) -> str:
    """The Markdown transcript: a header (date, channel, message count, summary), then each message."""
    return "".join([transcript_header(meta, len(messages)), *map(message_section, messages), "\n"])


def transcript_header(meta: SessionMeta, message_count: int) -> str:
    """The transcript's first lines, up to its last message's end (the text ends with ``"\n"`` after it)."""
    lines = [
        f"# {meta.title or 'Untitled session'}",
        "",
        f"- Session: `{meta.id}`",
        f"- Date: {_utc(meta.created_at)} to {_utc(meta.last_message_at)}",
        f"- Channel: {meta.channel}" + (f" (key `{meta.channel_session_key}`)" if meta.channel_session_key else ""),
        f"- User: {meta.user_id}",
        f"- Messages: {message_count}",
        f"- Summary: {meta.summary or '(none)'}",
    ]
    return "\n".join(lines)


def message_section(message: SessionMessage) -> str:
    """One message of the transcript: a rule, its role and time, its content."""
    return f"\n\n---\n\n## {message.role} · {_utc(message.timestamp)}\n\n{message.content}"


def write_if_changed(path: Path, text: str) -> None:
    """Make ``path`` hold ``text``: untouched if it already does, else replaced atomically.

    The file is readable and writable by its owner only (``0600``). The text goes
    to a temporary file in the same folder, is flushed to disk, then
    renamed over ``path``: a reader sees the old file or the new one, never half of
    one, and a failure leaves no temporary file behind.
    """
    write_pieces_if_changed(path, [text])


def write_pieces_if_changed(path: Path, pieces: Iterable[str]) -> None:
    """:func:`write_if_changed` of the text the ``pieces`` make, written as they come.

    Each piece goes to the temporary file and is compared with the same bytes of
    the existing file as it is written, so memory holds one piece, never the text.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file, _open_existing(path) as existing:
            # Chat logs are private: owner-only whatever the umask (mkstemp's 0600 is subject to it).
            os.fchmod(file.fileno(), 0o600)
            same = existing is not None
            for piece in pieces:
                data = piece.encode("utf-8")
                file.write(data)
                if same:
                    assert existing is not None
                    same = existing.read(len(data)) == data
            if same:
                assert existing is not None
                same = existing.read(1) == b""
            if not same:
                file.flush()
                os.fsync(file.fileno())
        if same:
            Path(temporary).unlink()
            return
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextmanager
def _open_existing(path: Path) -> Iterator[BinaryIO | None]:
    """The existing file opened for reading, or ``None`` when there is none."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        yield None
        return
    with file:
        yield file


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_transcripts(folder: Path, session_id: str) -> int:
    """Delete the session's exported transcripts from ``folder``; returns how many went.

    A transcript's name ends with the id's first characters whatever the title was
    then (``*-<id8>.md``); its header names the full id, which is checked so that
    another session sharing those characters keeps its file.
    """
    removed = 0
    header = f"- Session: `{session_id}`"
    for path in folder.glob(f"*-{glob.escape(session_id[:_ID_PREFIX_LENGTH])}.md"):
        try:
            with path.open(encoding="utf-8", errors="replace") as file:
                head = [next(file, "") for _ in range(4)]
        except FileNotFoundError:
            continue
        if any(line.rstrip("\n") == header for line in head):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
