"""SQL of the ``compaction_log`` aggregate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

from ..models import CompactionRow

__all__ = ["CompactionRepository"]

_t = CompactionRow.__table__


class CompactionRepository:
    """Appends to the log of context compactions."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def append(
        self,
        session_id: str,
        *,
        trigger: str,
        pre_tokens: int,
        summary: str,
        messages_compacted: int,
        now: datetime,
    ) -> None:
        """Record one compaction of ``session_id`` at ``now``."""
        self._connection.execute(
            insert(_t).values(
                session_id=session_id,
                timestamp=now,
                trigger=trigger,
                pre_tokens=pre_tokens,
                summary=summary,
                messages_compacted=messages_compacted,
            )
        )
