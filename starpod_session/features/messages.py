"""Messages: saving one (its title, its tool statistics, its idempotency key), reading them, exporting a transcript."""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Iterable
from itertools import chain
from os import urandom
from pathlib import Path

from .._clock import utc_now
from .._common.tool_calls import (
    TOOL_RESULT,
    TOOL_USE,
    ToolResult,
    ToolUse,
    may_answer_a_call,
    read_tool_result,
    read_tool_use,
)
from .._common.validation import (
    MAX_CONTENT_BYTES,
    check_count,
    check_limit,
    check_optional_short_text,
    check_session_id,
    check_short_text,
    check_text,
)
from .._driver.runner import StatementRunner
from ..backends.deadlines import BULK_TIMEOUT, exempt
from ..errors import ExportError, InvalidInput, SessionNotFound
from ..records import SessionMessage
from ..storage.repositories import MessageRepository, SessionRepository, ToolCallRepository
from .base import ManagerState
from .titles import shorten_title
from .transcripts import message_section, transcript_filename, transcript_header, write_pieces_if_changed


def save_message(
    self: ManagerState, session_id: str, role: str, content: str, *, message_key: str | None = None
) -> int:
    """Append a message and return its id; a ``user`` message also titles an untitled session.

    Saving a message is activity: ``last_message_at`` becomes now (so a time-gap
    channel does not auto-close a live conversation); ``message_count``, which
    counts :meth:`touch_session` calls, is unchanged.

    ``content`` may hold up to 16 MiB of UTF-8 (``InvalidInput`` above that).
    ``message_key`` (up to 255 characters, unique per session) makes the call
    idempotent: when the session already has a message under that key, its id
    is returned and nothing is written (no message, no title). Without one, the
    call stores a key of its own, so the library's retries never double it.
    A ``tool_use`` or ``tool_result`` message (a JSON object, as the Rust crate
    writes them) also feeds :attr:`CostOverview.by_tool`; content that is not
    such an object is stored all the same.
    """
    session_id = check_session_id(session_id)
    message = _checked_message(role, content, message_key)
    return self._transactions.write_prepared(lambda connection: _store_message(connection, session_id, message))


def save_messages(self: ManagerState, session_id: str, messages: Iterable[tuple[str, str]]) -> list[int]:
    """Append several ``(role, content)`` messages in one transaction; returns their ids, in order.

    Each is stored as :meth:`save_message` stores it (with a key of its own);
    all or none are stored, their ids ascend in the order given, and no other
    writer's message comes between them. ``[]`` stores nothing (and does not
    check the session).
    """
    session_id = check_session_id(session_id)
    # A list's test first: the ABC's costs more (this is an adapter's hot path).
    if messages.__class__ is not list and (isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable)):
        raise InvalidInput("messages", f"expected an iterable of (role, content), got {type(messages).__name__}")
    checked = []
    for message in messages:
        if not isinstance(message, tuple) or len(message) != 2:
            raise InvalidInput("messages", f"expected (role, content) tuples, got {type(message).__name__}")
        checked.append(_checked_message(message[0], message[1], None))
    if not checked:
        return []
    return self._transactions.write_prepared(
        lambda connection: [_store_message(connection, session_id, one) for one in checked]
    )


def pop_message(self: ManagerState, session_id: str) -> SessionMessage | None:
    """Delete the session's newest message and return it; ``None`` when it has none (or no such session).

    One transaction: of racing callers each gets a different message. The
    message's search entries and tool-statistics row go with it; the session's
    ``last_message_at`` and title stay.
    """
    session_id = check_session_id(session_id)
    return self._transactions.write_prepared(lambda connection: MessageRepository(connection).delete_newest(session_id))


def clear_messages(self: ManagerState, session_id: str) -> int:
    """Delete every message of the session (the session, its usage and compactions stay); returns how many.

    ``0`` for a session without messages or an unknown id.
    """
    session_id = check_session_id(session_id)
    return self._transactions.write_prepared(
        lambda connection: MessageRepository(connection).delete_for_session(session_id)
    )


def get_messages(
    self: ManagerState, session_id: str, limit: int | None = None, before_id: int | None = None
) -> list[SessionMessage]:
    """The session's messages in insertion (id) order (``[]`` for an unknown id).

    Keyset paging for long sessions: ``before_id`` keeps messages with a smaller
    id, ``limit`` the newest ``limit`` of those; the page still comes back in
    ascending id order. Pass the first message's id of a page as ``before_id``
    to get the page before it.
    """
    session_id = check_session_id(session_id)
    if limit is not None:
        limit = check_limit("limit", limit)
    if before_id is not None:
        before_id = check_count("before_id", before_id)
    return self._transactions.read_prepared(
        lambda connection: MessageRepository(connection).list_for_session(session_id, limit, before_id)
    )


def get_message_contents(self: ManagerState, session_id: str, limit: int | None = None) -> list[tuple[str, str]]:
    """The ``(role, content)`` of the session's messages, oldest first (``[]`` for an unknown id).

    What :meth:`get_messages` returns without ids and timestamps, for readers
    that need the text only (an adapter rebuilding a framework's history):
    about twice as fast on a long transcript. ``limit`` keeps the newest
    ``limit``, still oldest first.
    """
    session_id = check_session_id(session_id)
    if limit is not None:
        limit = check_limit("limit", limit)
    return self._transactions.read_prepared(
        lambda connection: MessageRepository(connection).contents_for_session(session_id, limit)
    )


def export_transcript(self: ManagerState, session_id: str) -> Path:
    """Write the closed session's Markdown transcript to ``sessions_dir``; returns its path.

    The file is ``<title slug>-<id prefix>.md``: a header (title, id, dates,
    channel, user, message count, summary), then every message. Exporting
    again rewrites nothing when the content is unchanged, and replaces the
    file atomically when it changed (e.g. a new summary). The messages are
    read in pages of 1,000 within one read snapshot and written as they come,
    so memory does not grow with the transcript. ``ExportError`` for an open
    session, a manager without ``sessions_dir`` or a file that cannot be
    written; ``SessionNotFound`` for an unknown id.
    """
    session_id = check_session_id(session_id)
    if self.sessions_dir is None:
        raise ExportError("no sessions_dir: pass SessionManager(db, sessions_dir) to export transcripts")
    sessions_dir = self.sessions_dir

    def work(connection: StatementRunner) -> Path:
        # One snapshot: the header's count and the pages agree. The file is written
        # as the pages come (memory holds one page), inside the read transaction.
        meta = SessionRepository(connection).get(session_id)
        if meta is None:
            raise SessionNotFound(session_id)
        if not meta.is_closed:
            raise ExportError(f"session {session_id!r} is still open: close it before exporting its transcript")
        messages = MessageRepository(connection)
        path = sessions_dir / transcript_filename(meta)
        pieces = chain(
            [transcript_header(meta, messages.count_for_session(session_id))],
            ("".join(map(message_section, page)) for page in messages.pages(session_id)),
            ["\n"],
        )
        try:
            write_pieces_if_changed(path, pieces)
        except OSError as error:
            raise ExportError(f"cannot write {path}: {error.strerror or error}") from error
        return path

    with exempt(BULK_TIMEOUT):  # bulk work: a long transcript may take longer than statement_timeout
        return self._transactions.read_prepared(work, snapshot=True)


def generated_key() -> str:
    """An idempotency key for a write whose caller gave none: 128 random bits in 22 characters.

    ``secrets.token_urlsafe(16)`` written out (the same random source and alphabet), without
    its four calls: one is made for every message saved without a key.
    """
    return b2a_base64(urandom(16), newline=False)[:22].translate(_URL_SAFE).decode()


#: base64's two non-alphanumeric characters made URL-safe, as ``base64.urlsafe_b64encode`` does.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


#: A message checked by :func:`_checked_message`: role, content, the caller's key, the key stored,
#: the title it gives, and what a tool_use / tool_result message says.
_CheckedMessage = tuple[str, str, "str | None", str, "str | None", "ToolUse | None", "ToolResult | None"]


def _checked_message(role: object, content: object, message_key: object) -> _CheckedMessage:
    """Validate one message of :meth:`save_message` (``InvalidInput``) and work out what it stores."""
    role = check_short_text("role", role)
    content = check_text("content", content, max_bytes=MAX_CONTENT_BYTES)
    given_key = check_optional_short_text("message_key", message_key)
    # One key for every attempt of this call: a retry after a commit the
    # caller never heard of finds the first attempt's row.
    key = generated_key() if given_key is None else given_key
    title = shorten_title(content) if role == "user" and content.strip() else None
    use = read_tool_use(content) if role == TOOL_USE else None
    result = read_tool_result(content) if role == TOOL_RESULT and may_answer_a_call(content) else None
    if result is not None and (result.call_id is None or not result.is_error):
        result = None  # a result the tool statistics do not count: stored as any message is
    return role, content, given_key, key, title, use, result


def _store_message(connection: StatementRunner, session_id: str, message: _CheckedMessage) -> int:
    """Store a checked message in the caller's transaction; returns its id."""
    role, content, given_key, key, title, use, result = message
    sessions, messages = SessionRepository(connection), MessageRepository(connection)
    if given_key is not None or use is not None or result is not None:
        # A repeat is answered before anything is written (the title and the
        # tool statistics too). A generated key is new, except on a retry after
        # a commit the caller never heard of: then the message and its tool row
        # are already stored.
        found = messages.find_by_key(session_id, key)
        if found is not None:
            return found
    now = utc_now()
    # Before the insert: on MariaDB the insert's foreign-key check share-locks
    # the session row, and racing writers that then upgrade it to update it
    # deadlock each other.
    if not sessions.record_message_activity(session_id, now, title):
        raise SessionNotFound(session_id)
    message_id = messages.append(session_id, role, content, now, key)
    if use is not None:
        ToolCallRepository(connection).record_use(message_id, session_id, use, now)
    elif result is not None:
        ToolCallRepository(connection).record_result(message_id, session_id, result, now)
    return message_id
