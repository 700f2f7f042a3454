"""``save_message`` on SQLite against the least any searchable append costs (SQLite only).

The ``save_message`` row of ``calls`` replays our own SQL on our own schema, so
it measures our Python overhead and nothing else: the pages our schema writes
per append (its indexes, the FTS5 index's shadow tables) cost both sides alike.
This row measures them too. Its floor is a schema of its own, the least an
append that stays searchable needs, on a fresh file beside ours (also fresh):

* ``sessions`` (``id`` TEXT PRIMARY KEY, ``last_message_at``, ``title``), no
  other index;
* ``messages`` (``id`` INTEGER PRIMARY KEY, ``session_id`` referencing
  ``sessions``, ``role``, ``content``, ``timestamp``), no other index;
* ``messages_fts``: an external-content FTS5 table over ``content`` (our
  tokenizer, FTS5's defaults otherwise), kept by an ``AFTER INSERT`` trigger.

One ``BEGIN IMMEDIATE`` transaction per append, with our connection settings
(``floors.SqliteFloor``: WAL, ``synchronous=NORMAL``, the 8 MiB page cache):
``UPDATE sessions SET last_message_at`` (and the title, for a user message),
one row changed or ``LookupError``, then ``INSERT`` the message and read back
its id. Ours is ``SessionManager.save_message`` with everything it keeps.
Target: ours within 1.5x.
"""

from __future__ import annotations

from datetime import datetime

from datasets import Target
from floors import SqliteFloor
from harness import UTC, Report, Scale, interleaved

from starpod_session import Channel, SessionManager
from starpod_session.features.titles import shorten_title

LIMIT = 1.5
SCHEMA = (
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, last_message_at TEXT NOT NULL, title TEXT)",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions (id), "
    "role TEXT NOT NULL, content TEXT NOT NULL, timestamp TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END",
)


def floor_append(floor: SqliteFloor, session_id: str, role: str, content: str) -> int:
    title = shorten_title(content) if role == "user" and content.strip() else None
    now = floor.stamp(datetime.now(UTC))
    with floor.write() as cur:
        if title is None:
            cur.execute("UPDATE sessions SET last_message_at = ? WHERE id = ?", (now, session_id))
        else:
            cur.execute(
                "UPDATE sessions SET last_message_at = ?, title = COALESCE(title, ?) WHERE id = ?",
                (now, title, session_id),
            )
        if cur.rowcount != 1:
            raise LookupError(session_id)
        return floor.insert_id(
            cur,
            "INSERT INTO messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)",
            (session_id, role, content, now),
        )


def run(target: Target, scale: Scale, report: Report) -> None:
    """Fresh files on both sides, messages round-robin over the sessions, user and assistant alternating."""
    if target.backend != "sqlite":
        return
    content = "Please summarise the attached meeting notes and list the action items. " * 4
    total = scale.save_sessions * scale.save_per_session
    floor = SqliteFloor(target.fresh("append_floor"))
    with floor.write() as cur:
        for statement in SCHEMA:
            cur.execute(statement)
        floor_ids = [f"floor-{n:04d}-0000-4000-8000-000000000000" for n in range(scale.save_sessions)]
        cur.executemany(
            "INSERT INTO sessions (id, last_message_at) VALUES (?, ?)",
            [(session_id, floor.stamp(datetime.now(UTC))) for session_id in floor_ids],
        )

    def role(n: int) -> str:
        return "user" if n % 2 == 0 else "assistant"

    try:
        with SessionManager(target.fresh("append_ours")) as mgr:
            ours_ids = [mgr.create_session(Channel.MAIN, f"append-{n}") for n in range(scale.save_sessions)]
            report.compare(
                f"save_message vs FTS5 floor ({scale.save_sessions}x{scale.save_per_session})",
                *interleaved(
                    total,
                    lambda n: mgr.save_message(ours_ids[n % len(ours_ids)], role(n), content),
                    lambda n: floor_append(floor, floor_ids[n % len(floor_ids)], role(n), content),
                ),
                limit=LIMIT,
            )
    finally:
        floor.close()
