"""One open session per (channel, key, user_id), enforced by the database; hot-path indexes.

The Rust crate resolved and created sessions without a transaction, so racing
messages could leave two open sessions for one key. Before the unique index can
exist, every such group keeps its most recently active session open and the
others are closed with a summary saying why.

``open_slot`` is a generated column (1 while open, NULL once closed) under a
unique index, because MariaDB has no partial indexes. SQLite can only add a
VIRTUAL generated column in place (a STORED one would mean rebuilding the table
the Rust crate's files share with other tools); PostgreSQL 15 only has STORED.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_SLOT_SQL = "CASE WHEN is_closed THEN NULL ELSE 1 END"
DUPLICATE_SUMMARY = "Auto-closed: duplicate open session for this key (kept the most recent, {kept})"

sessions = sa.table(
    "session_metadata",
    sa.column("id", sa.String),
    sa.column("created_at", sa.String),
    sa.column("last_message_at", sa.String),
    sa.column("is_closed", sa.Boolean),
    sa.column("summary", sa.Text),
    sa.column("channel", sa.String),
    sa.column("channel_session_key", sa.String),
    sa.column("user_id", sa.String),
)


def close_duplicate_open_sessions() -> None:
    """Close all but the most recently active open session of every (channel, key, user_id)."""
    bind = op.get_bind()
    is_open = sessions.c.is_closed == sa.false()
    rows = bind.execute(
        sa.select(sessions.c.id, sessions.c.channel, sessions.c.channel_session_key, sessions.c.user_id)
        .where(is_open, sessions.c.channel_session_key.is_not(None))
        .order_by(sessions.c.last_message_at.desc(), sessions.c.created_at.desc(), sessions.c.id.desc())
    )
    kept: dict[tuple[str, str, str], str] = {}
    for session_id, channel, key, user_id in rows.all():
        group = (channel, key, user_id)
        if group not in kept:
            kept[group] = session_id
            continue
        bind.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(is_closed=True, summary=DUPLICATE_SUMMARY.format(kept=kept[group]))
        )


def upgrade() -> None:
    close_duplicate_open_sessions()
    persisted = None if op.get_bind().dialect.name == "sqlite" else True
    with op.batch_alter_table("session_metadata") as batch:
        batch.add_column(
            sa.Column("open_slot", sa.Integer(), sa.Computed(OPEN_SLOT_SQL, persisted=persisted), nullable=True)
        )
        batch.create_index(
            "uq_session_one_open_per_key",
            ["channel", "channel_session_key", "user_id", "open_slot"],
            unique=True,
        )
        batch.create_index("idx_session_recent", ["last_message_at", "created_at", "id"])
    op.create_index("idx_usage_stats_timestamp", "usage_stats", ["timestamp"])
    op.create_index("idx_usage_stats_session", "usage_stats", ["session_id"])


def downgrade() -> None:
    op.drop_index("idx_usage_stats_session", table_name="usage_stats")
    op.drop_index("idx_usage_stats_timestamp", table_name="usage_stats")
    with op.batch_alter_table("session_metadata") as batch:
        batch.drop_index("idx_session_recent")
        batch.drop_index("uq_session_one_open_per_key")
    # SQLite drops an unindexed generated column in place; batch mode would
    # rebuild the table (and cascade-delete its messages on the way).
    op.drop_column("session_metadata", "open_slot")
