"""Fewer pages written per appended message: SQLite's search index takes messages in batches.

Measured on SQLite (a fresh file, 10 sessions, 1,000 appends), ``save_message``
wrote about 15 pages per commit, 5 of them for the FTS5 index of 0008: each
commit flushed a segment of its own (its leaf, the structure and averages
records, a ``%_idx`` row, a ``%_docsize`` row) and merged segments, whatever the
size of the message. A raw append keeping the same index wrote about 6.

- SQLite: the insert trigger indexes messages 32 ids at a time. A message whose
  id is less than 32 above the largest indexed id (``max(id)`` of
  ``session_messages_fts_docsize``, which FTS5 keeps one row per indexed
  message) is left for later; the insert that reaches 32 indexes every message
  above that id, itself included, in one segment. So the messages not yet
  indexed are always those above the largest indexed id: fewer than 32 of
  them while ids only grow (after the newest indexed messages are deleted, a
  few more may wait). ``SessionManager.search_messages`` indexes them (one write
  transaction) before it searches, and ``close()`` before it lets go, so a
  saved message is found by the next search. A message inserted below the
  largest indexed id (a program choosing its ids) is indexed at once, with
  any messages waiting. The delete and update triggers touch the index only
  for indexed messages (an FTS5 ``delete`` of a message it never indexed would
  corrupt it).
- Every backend: ``idx_session_channel_key`` (the Rust crate's; channel, key,
  closed flag, last activity) goes. No query uses it since 0002 (the open
  session of a key is found through ``uq_session_one_open_per_key``), and every
  message rewrote its entry (``last_message_at`` changes).

Going down indexes the waiting messages, restores 0008's triggers and
recreates the index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Frozen copies of ``repositories.search``'s names as of this revision.
FTS_TABLE = "session_messages_fts"
DOCSIZE = "session_messages_fts_docsize"
#: Frozen copy of ``repositories.search.INDEX_BATCH``.
BATCH = 32
CHANNEL_KEY_INDEX = "idx_session_channel_key"

_INDEXED_UP_TO = f"(SELECT coalesce(max(id), 0) FROM {DOCSIZE})"
_INDEX_WAITING = (
    f"INSERT INTO {FTS_TABLE}(rowid, content) SELECT id, content FROM session_messages WHERE id > {_INDEXED_UP_TO}"
)
_TRIGGERS = ("session_messages_fts_insert", "session_messages_fts_delete", "session_messages_fts_update")
SQLITE_UPGRADE = (
    *(f"DROP TRIGGER {name}" for name in _TRIGGERS),
    f"CREATE TRIGGER session_messages_fts_insert AFTER INSERT ON session_messages "
    f"WHEN new.id - {_INDEXED_UP_TO} NOT BETWEEN 1 AND {BATCH - 1} BEGIN "
    f"{_INDEX_WAITING} OR id = new.id; END",
    f"CREATE TRIGGER session_messages_fts_delete AFTER DELETE ON session_messages "
    f"WHEN old.id <= {_INDEXED_UP_TO} BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content); END",
    f"CREATE TRIGGER session_messages_fts_update AFTER UPDATE OF content ON session_messages "
    f"WHEN old.id <= {_INDEXED_UP_TO} BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content); "
    f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END",
)
#: 0008's triggers, as it created them.
SQLITE_DOWNGRADE = (
    _INDEX_WAITING,
    *(f"DROP TRIGGER {name}" for name in _TRIGGERS),
    f"CREATE TRIGGER session_messages_fts_insert AFTER INSERT ON session_messages BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END",
    f"CREATE TRIGGER session_messages_fts_delete AFTER DELETE ON session_messages BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content); END",
    f"CREATE TRIGGER session_messages_fts_update AFTER UPDATE OF content ON session_messages BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content); "
    f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END",
)


def upgrade() -> None:
    op.drop_index(CHANNEL_KEY_INDEX, table_name="session_metadata")
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
    op.create_index(
        CHANNEL_KEY_INDEX,
        "session_metadata",
        ["channel", "channel_session_key", "is_closed", sa.literal_column("last_message_at DESC")],
    )
