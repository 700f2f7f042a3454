"""SQLite: a covering index that lets the cost reports group usage rows without sorting them.

SQLite aggregates by sorting. Grouping a million usage rows by (UTC day, model,
user) sorted them all; ``idx_usage_stats_day_model_user`` leads with the UTC day
as the reports compute it (the first ten characters of the RFC 3339 text), then
the model and user, and carries every column the reports sum, so walking it in
order is the grouping. PostgreSQL and MariaDB hash-aggregate: nothing changes
there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "idx_usage_stats_day_model_user"
COLUMNS = ["model", "user_id", "cost_usd", "input_tokens", "output_tokens", "cache_read", "cache_write", "timestamp"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index(INDEX, "usage_stats", [sa.text("substr(timestamp, 1, 10)"), *COLUMNS])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index(INDEX, table_name="usage_stats")
