"""Baseline: the four tables exactly as the Rust crate ``starpod-session`` creates them.

A Rust-era SQLite file (recognised by its ``_sqlx_migrations`` table) already holds
this schema and is stamped at this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARIADB_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

# The column types as this revision created them, frozen here: the library's live column
# types may change, and a revision must keep creating what it always created. Only
# their DDL matters to a migration, so plain variants suffice.
ShortText = sa.Text().with_variant(sa.String(255), "mysql", "mariadb")
ChannelText = sa.Text().with_variant(sa.String(64), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Double().with_variant(sa.REAL(), "sqlite")
#: RFC 3339 TEXT on SQLite, DATETIME(6) holding UTC on MariaDB, TIMESTAMP WITH TIME ZONE on PostgreSQL.
UtcTimestamp = (
    sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite").with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
)
#: INTEGER 0/1 on SQLite (as the Rust crate declared it), BOOLEAN elsewhere.
IntBoolean = sa.Boolean(create_constraint=False).with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "session_metadata",
        sa.Column("id", ShortText, nullable=False),
        sa.Column("created_at", UtcTimestamp, nullable=False),
        sa.Column("last_message_at", UtcTimestamp, nullable=False),
        sa.Column("is_closed", IntBoolean, server_default=sa.false(), nullable=False),
        sa.Column("summary", LongText, nullable=True),
        sa.Column("message_count", Count, server_default=sa.text("0"), nullable=False),
        sa.Column("channel", ChannelText, server_default=sa.text("'main'"), nullable=False),
        sa.Column("channel_session_key", ShortText, nullable=True),
        sa.Column("title", ShortText, nullable=True),
        sa.Column("user_id", ShortText, server_default=sa.text("'admin'"), nullable=False),
        sa.Column("is_read", IntBoolean, server_default=sa.true(), nullable=False),
        sa.Column("triggered_by", ShortText, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_metadata")),
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index(
        "idx_session_channel_key",
        "session_metadata",
        ["channel", "channel_session_key", "is_closed", sa.literal_column("last_message_at DESC")],
    )
    op.create_index("idx_session_user_channel", "session_metadata", ["user_id", "channel", "channel_session_key"])

    op.create_table(
        "session_messages",
        sa.Column("id", Count, autoincrement=True, nullable=False),
        sa.Column("session_id", ShortText, nullable=False),
        sa.Column("role", ShortText, nullable=False),
        sa.Column("content", LongText, nullable=False),
        sa.Column("timestamp", UtcTimestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metadata.id"],
            name=op.f("fk_session_messages_session_id_session_metadata"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_messages")),
        sqlite_autoincrement=True,
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index("idx_session_messages_session", "session_messages", ["session_id", "id"])

    op.create_table(
        "usage_stats",
        sa.Column("id", Count, autoincrement=True, nullable=False),
        sa.Column("session_id", ShortText, nullable=False),
        sa.Column("turn", Count, nullable=False),
        sa.Column("input_tokens", Count, server_default=sa.text("0"), nullable=False),
        sa.Column("output_tokens", Count, server_default=sa.text("0"), nullable=False),
        sa.Column("cache_read", Count, server_default=sa.text("0"), nullable=False),
        sa.Column("cache_write", Count, server_default=sa.text("0"), nullable=False),
        sa.Column("cost_usd", Money, server_default=sa.text("0.0"), nullable=False),
        sa.Column("model", ShortText, nullable=True),
        sa.Column("timestamp", UtcTimestamp, nullable=False),
        sa.Column("user_id", ShortText, server_default=sa.text("'admin'"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_stats")),
        sqlite_autoincrement=True,
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index("idx_usage_stats_user", "usage_stats", ["user_id", "timestamp"])

    op.create_table(
        "compaction_log",
        sa.Column("id", Count, autoincrement=True, nullable=False),
        sa.Column("session_id", ShortText, nullable=False),
        sa.Column("timestamp", UtcTimestamp, nullable=False),
        sa.Column("trigger", ShortText, server_default=sa.text("'auto'"), nullable=False),
        sa.Column("pre_tokens", Count, nullable=False),
        sa.Column("summary", LongText, nullable=False),
        sa.Column("messages_compacted", Count, server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metadata.id"],
            name=op.f("fk_compaction_log_session_id_session_metadata"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compaction_log")),
        sqlite_autoincrement=True,
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index("idx_compaction_log_session", "compaction_log", ["session_id"])


def downgrade() -> None:
    op.drop_table("compaction_log")
    op.drop_table("usage_stats")
    op.drop_table("session_messages")
    op.drop_table("session_metadata")
