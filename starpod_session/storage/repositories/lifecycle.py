"""SQL of the data lifecycle: deleting sessions with everything hanging off them.

Messages and compactions are deleted explicitly rather than through ``ON DELETE
CASCADE``: files adopted from the Rust crate may lack the cascade, and SQLite only
honours it with ``foreign_keys=ON``. Each engine's search index follows the
messages by itself (SQLite's triggers, PostgreSQL's index on its generated
column, the ``ON DELETE CASCADE`` of MariaDB's table of words).
"""

from __future__ import annotations

from datetime import datetime

import attrs
from sqlalchemy import Connection, Select, Table, delete, func, select, true, update

from ..models import CompactionRow, MessageRow, SessionRow, UsageRow

__all__ = ["LifecycleRepository", "Removed", "prunable", "sessions_of_user"]

_sessions = SessionRow.__table__
_messages = MessageRow.__table__
_compactions = CompactionRow.__table__
_usage = UsageRow.__table__


@attrs.frozen
class Removed:
    """Rows a deletion removed (or, counting only, would remove)."""

    sessions: int = 0
    messages: int = 0
    compactions: int = 0
    usage_rows: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(*(a + b for a, b in zip(attrs.astuple(self), attrs.astuple(other), strict=True)))


def prunable(cutoff: datetime) -> Select[str]:
    """The ids of the closed sessions last active before ``cutoff``."""
    return select(_sessions.c.id).where(_sessions.c.is_closed == true(), _sessions.c.last_message_at < cutoff)


def sessions_of_user(user_id: str) -> Select[str]:
    """The ids of ``user_id``'s sessions."""
    return select(_sessions.c.id).where(_sessions.c.user_id == user_id)


class LifecycleRepository:
    """Finds and deletes sessions and their rows; never commits."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def session_ids_of_user(self, user_id: str) -> list[str]:
        """Every session id of ``user_id``."""
        return list(self._connection.scalars(sessions_of_user(user_id)))

    def prunable_session_ids(self, cutoff: datetime, limit: int) -> list[str]:
        """Up to ``limit`` closed sessions last active before ``cutoff``, oldest first."""
        return list(
            self._connection.scalars(
                prunable(cutoff).order_by(_sessions.c.last_message_at, _sessions.c.id).limit(limit)
            )
        )

    def count_sessions(self, chosen: Select[str] | list[str], *, keep_usage: bool) -> Removed:
        """What deleting the ``chosen`` sessions (ids, or a query of ids) would remove, counted in SQL."""

        def rows(t: Table) -> int:
            column = t.c.id if t is _sessions else t.c.session_id
            return self._connection.execute(select(func.count()).select_from(t).where(column.in_(chosen))).scalar_one()

        return Removed(rows(_sessions), rows(_messages), rows(_compactions), 0 if keep_usage else rows(_usage))

    def count_usage_of_user(self, user_id: str) -> int:
        """How many usage rows name ``user_id``."""
        return self._connection.execute(
            select(func.count()).select_from(_usage).where(_usage.c.user_id == user_id)
        ).scalar_one()

    def delete_sessions(self, session_ids: list[str], *, keep_usage: bool) -> Removed:
        """Delete the sessions, their messages and compactions; their usage rows stay unless ``keep_usage`` is off.

        Kept usage rows still name the session id (as text: ``usage_stats`` has
        no foreign key), so totals and per-session accounting still add up.
        """
        if not session_ids:
            return Removed()

        def gone(t: Table) -> int:
            column = t.c.id if t is _sessions else t.c.session_id
            return self._connection.execute(delete(t).where(column.in_(session_ids))).rowcount

        messages = gone(_messages)
        compactions = gone(_compactions)
        usage = 0 if keep_usage else gone(_usage)
        return Removed(gone(_sessions), messages, compactions, usage)

    def pseudonymise_usage(self, user_id: str, pseudonym: str) -> int:
        """Replace ``user_id`` by ``pseudonym`` on every usage row; returns how many rows changed."""
        return self._connection.execute(
            update(_usage).where(_usage.c.user_id == user_id).values(user_id=pseudonym)
        ).rowcount
