"""``save_message``: titles the session (a user message), marks activity, inserts; a transaction per call."""

from __future__ import annotations

from datetime import datetime

from datasets import WORDS_INSERT
from floors import Floor, MariaFloor
from harness import UTC, Report, Scale, interleaved

from starpod_session import SessionManager
from starpod_session._common.search_query import indexed_words
from starpod_session.features.titles import shorten_title


def floor_save_message(floor: Floor, session_id: str, role: str, content: str) -> int:
    title = shorten_title(content) if role == "user" and content.strip() else None
    now = floor.stamp(datetime.now(UTC))
    with floor.write() as cur:
        if title is None:
            cur.execute(floor.sql("UPDATE session_metadata SET last_message_at = ? WHERE id = ?"), (now, session_id))
        else:
            cur.execute(
                floor.sql("UPDATE session_metadata SET last_message_at = ?, title = COALESCE(title, ?) WHERE id = ?"),
                (now, title, session_id),
            )
        if cur.rowcount != 1:
            raise LookupError(session_id)
        message_id = floor.insert_id(
            cur,
            "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)",
            (session_id, role, content, now),
        )
        if isinstance(floor, MariaFloor):  # MariaDB's search index is a table the writer fills
            cur.executemany(WORDS_INSERT, [(word, message_id, hits) for word, hits in indexed_words(content).items()])
        return message_id


def measure(
    mgr: SessionManager, floor: Floor, ours_ids: list[str], floor_ids: list[str], scale: Scale, report: Report
) -> None:
    """Messages round-robin over the sessions, user and assistant alternating."""
    content = "Please summarise the attached meeting notes and list the action items. " * 4
    total = scale.save_sessions * scale.save_per_session

    def role(n: int) -> str:
        return "user" if n % 2 == 0 else "assistant"

    report.compare(
        f"save_message ({scale.save_sessions}x{scale.save_per_session})",
        *interleaved(
            total,
            lambda n: mgr.save_message(ours_ids[n % len(ours_ids)], role(n), content),
            lambda n: floor_save_message(floor, floor_ids[n % len(floor_ids)], role(n), content),
        ),
        limit=2.0,
    )
