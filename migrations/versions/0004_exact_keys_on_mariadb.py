"""Keys compare exactly on MariaDB: ``'k'`` and ``'k '`` are two keys, as on SQLite and PostgreSQL.

MariaDB's ``utf8mb4_bin`` is a PAD SPACE collation: it ignores trailing spaces,
so there ``'k'`` and ``'k '`` were one key (one open session between them) and
``'bob'`` and ``'bob '`` one user in the cost reports. The columns the library
looks up and groups by move to ``utf8mb4_nopad_bin``, the same binary comparison
without the padding. That only tells more values apart, so no unique key can
collide on the way up. SQLite and PostgreSQL never padded: nothing changes there.

Going down brings the padding back, under which two open sessions may now share
a key: all but the most recently active of each such group are closed first,
with a summary naming the one kept, as 0002 did.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXACT, PADDED = "utf8mb4_nopad_bin", "utf8mb4_bin"
#: table → the columns compared by value, as declared apart from their collation.
COLUMNS = {
    "session_metadata": {
        "channel": "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL DEFAULT 'main'",
        "channel_session_key": "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NULL",
        "user_id": "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL DEFAULT 'admin'",
    },
    "usage_stats": {
        "model": "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NULL",
        "user_id": "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL DEFAULT 'admin'",
    },
}
SUPERSEDED_SUMMARY = "Auto-closed: its key equals {kept}'s once trailing spaces are ignored (kept the most recent)"

sessions = sa.table(
    "session_metadata",
    sa.column("id", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("last_message_at", sa.DateTime),
    sa.column("is_closed", sa.Boolean),
    sa.column("summary", sa.Text),
    sa.column("channel", sa.String),
    sa.column("channel_session_key", sa.String),
    sa.column("user_id", sa.String),
)


def on_mariadb() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def set_collation(collation: str) -> None:
    """One ALTER TABLE per table, so each is rebuilt once."""
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f"MODIFY {column} {definition.format(collation=collation)}" for column, definition in columns.items()
        )
        op.execute(f"ALTER TABLE {table} {changes}")


def close_sessions_whose_keys_pad_alike() -> None:
    """Keep one open session per (channel, key, user_id) as PAD SPACE compares them: the most recent."""
    bind = op.get_bind()
    open_sessions = bind.execute(
        sa.select(sessions.c.id, sessions.c.channel, sessions.c.channel_session_key, sessions.c.user_id)
        .where(sessions.c.is_closed == sa.false(), sessions.c.channel_session_key.is_not(None))
        .order_by(sessions.c.last_message_at.desc(), sessions.c.created_at.desc(), sessions.c.id.desc())
    )
    kept: dict[tuple[str, ...], str] = {}
    for session_id, *key in open_sessions.all():
        padded = tuple(part.rstrip(" ") for part in key)
        winner = kept.setdefault(padded, session_id)
        if winner != session_id:
            bind.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id)
                .values(is_closed=True, summary=SUPERSEDED_SUMMARY.format(kept=winner))
            )


def upgrade() -> None:
    if on_mariadb():
        set_collation(EXACT)


def downgrade() -> None:
    if on_mariadb():
        close_sessions_whose_keys_pad_alike()
        set_collation(PADDED)
