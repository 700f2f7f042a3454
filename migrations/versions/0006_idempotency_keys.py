"""Idempotency keys on messages and usage rows: a repeated write is stored once.

``session_messages.message_key`` and ``usage_stats.usage_key`` hold the key of
the write that stored the row (the caller's, or one the library generated for
the call), each unique per session. Rows written before (by this library or by
the Rust crate) keep a NULL key, and a unique index admits any number of NULLs
on SQLite, PostgreSQL and MariaDB alike, so adopting a file keeps every row.

SQLite needs no batch mode here: ``ADD COLUMN`` of a nullable column and
``CREATE UNIQUE INDEX`` run in place. A batch would rebuild ``usage_stats`` and
lose ``idx_usage_stats_day_model_user`` (0005), an expression index the rebuild
cannot reflect. Going down, SQLite drops the columns with ``ALTER TABLE ... DROP
COLUMN`` (SQLite 3.35 or later) for the same reason.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Frozen copy of ``types.ExactShortText``: TEXT, or VARCHAR(255) compared exactly on MariaDB.
EXACT_SHORT_TEXT = sa.Text().with_variant(sa.String(255, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
#: table -> (key column, its unique index over (session_id, key)).
KEYS = {
    "session_messages": ("message_key", "uq_session_messages_session_id_message_key"),
    "usage_stats": ("usage_key", "uq_usage_stats_session_id_usage_key"),
}


def upgrade() -> None:
    for table, (column, index) in KEYS.items():
        op.add_column(table, sa.Column(column, EXACT_SHORT_TEXT, nullable=True))
        op.create_index(index, table, ["session_id", column], unique=True)


def downgrade() -> None:
    on_sqlite = op.get_bind().dialect.name == "sqlite"
    for table, (column, index) in KEYS.items():
        op.drop_index(index, table_name=table)
        if on_sqlite:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
