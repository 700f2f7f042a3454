"""Indexes for listing one user's or one channel's sessions, most recently active first.

``list_sessions(user_id=...)`` and ``list_sessions(channel=...)`` walk these in
order and stop after ``limit`` rows instead of sorting every session of the
user or channel.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECENCY = ["last_message_at", "created_at", "id"]


def upgrade() -> None:
    with op.batch_alter_table("session_metadata") as batch:
        batch.create_index("idx_session_user_recent", ["user_id", *RECENCY])
        batch.create_index("idx_session_channel_recent", ["channel", *RECENCY])


def downgrade() -> None:
    with op.batch_alter_table("session_metadata") as batch:
        batch.drop_index("idx_session_channel_recent")
        batch.drop_index("idx_session_user_recent")
