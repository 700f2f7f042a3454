"""SQL of the ``compaction_log`` aggregate."""

from __future__ import annotations

from datetime import datetime
from typing import Generic

from sqlalchemy import bindparam, insert

from ..._driver.runner import Runner
from ..._driver.statements import Prepared
from ..models import CompactionRow

__all__ = ["CompactionRepository"]

_t = CompactionRow.__table__
_APPEND = Prepared(
    insert(_t).values(
        session_id=bindparam("session_id"),
        timestamp=bindparam("now"),
        trigger=bindparam("trigger"),
        pre_tokens=bindparam("pre_tokens"),
        summary=bindparam("summary"),
        messages_compacted=bindparam("messages_compacted"),
    )
)


class CompactionRepository(Generic[Runner]):
    """Appends to the log of context compactions."""

    def __init__(self, connection: Runner) -> None:
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
        _APPEND.rowcount(
            self._connection,
            session_id=session_id,
            now=now,
            trigger=trigger,
            pre_tokens=pre_tokens,
            summary=summary,
            messages_compacted=messages_compacted,
        )
