"""Google ADK sessions: app, user and session state, raw events, each ADK session linked to a starpod session.

``starpod_session.integrations.adk.StarpodSessionService`` keeps ADK's
``BaseSessionService`` data here (through ``starpod_session.adk_store``), while
each event's messages and usage go to the library's own tables, so search,
transcripts and cost reports see ADK agents:

- ``adk_app_states`` (app), ``adk_user_states`` (app, user): the ``app:`` and
  ``user:`` scoped state, JSON objects with the prefixes taken off;
- ``adk_sessions``: one row per ADK session, keyed by (app, user, id), with its
  session-scoped state, ADK's create and update times (seconds since the epoch,
  as doubles, so a float read back equals the one stored), a revision bumped by
  every stored event (what tells a stale session object), and the starpod
  session holding its messages (``ON DELETE CASCADE``: deleting that session,
  forgetting its user or pruning it deletes the ADK session too);
- ``adk_events``: each stored event as ADK's JSON, under (starpod session, event
  id), read in (timestamp, id) order through ``idx_adk_events_session_time``.

New tables only, so nothing needs SQLite's batch mode; going down drops them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, sqlite

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The column types as this revision creates them, frozen (see 0001): DDL-only variants.
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ShortText = sa.Text().with_variant(sa.String(255), "mysql", "mariadb")
ExactShortText = sa.Text().with_variant(sa.String(255, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
EpochSeconds = sa.Double().with_variant(sqlite.REAL(), "sqlite")

MARIADB_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "adk_app_states",
        sa.Column("app_name", ExactShortText, nullable=False),
        sa.Column("state", LongText, nullable=False),
        sa.Column("update_time", EpochSeconds, nullable=False),
        sa.PrimaryKeyConstraint("app_name", name=op.f("pk_adk_app_states")),
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_table(
        "adk_user_states",
        sa.Column("app_name", ExactShortText, nullable=False),
        sa.Column("user_id", ExactShortText, nullable=False),
        sa.Column("state", LongText, nullable=False),
        sa.Column("update_time", EpochSeconds, nullable=False),
        sa.PrimaryKeyConstraint("app_name", "user_id", name=op.f("pk_adk_user_states")),
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_table(
        "adk_sessions",
        sa.Column("app_name", ExactShortText, nullable=False),
        sa.Column("user_id", ExactShortText, nullable=False),
        sa.Column("id", ExactShortText, nullable=False),
        sa.Column("session_id", ShortText, nullable=False),
        sa.Column("state", LongText, nullable=False),
        sa.Column("create_time", EpochSeconds, nullable=False),
        sa.Column("update_time", EpochSeconds, nullable=False),
        sa.Column("revision", Count, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metadata.id"],
            name=op.f("fk_adk_sessions_session_id_session_metadata"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app_name", "user_id", "id", name=op.f("pk_adk_sessions")),
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index("uq_adk_sessions_session_id", "adk_sessions", ["session_id"], unique=True)
    op.create_index("idx_adk_sessions_app_recent", "adk_sessions", ["app_name", "update_time", "user_id", "id"])
    op.create_index("idx_adk_sessions_user_recent", "adk_sessions", ["app_name", "user_id", "update_time", "id"])
    op.create_table(
        "adk_events",
        sa.Column("session_id", ShortText, nullable=False),
        sa.Column("id", ExactShortText, nullable=False),
        sa.Column("timestamp", EpochSeconds, nullable=False),
        sa.Column("event_data", LongText, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metadata.id"],
            name=op.f("fk_adk_events_session_id_session_metadata"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "id", name=op.f("pk_adk_events")),
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index("idx_adk_events_session_time", "adk_events", ["session_id", "timestamp", "id"])


def downgrade() -> None:
    # Their indexes go with the tables (MariaDB refuses to drop an index a foreign key needs).
    op.drop_table("adk_events")
    op.drop_table("adk_sessions")
    op.drop_table("adk_user_states")
    op.drop_table("adk_app_states")
