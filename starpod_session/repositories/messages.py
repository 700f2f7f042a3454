"""SQL of the ``session_messages`` aggregate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..models import MessageRow
from ..records import SessionMessage

__all__ = ["MessageRepository"]

_t = MessageRow.__table__


class MessageRepository:
    """Appends to and reads session transcripts."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def append(self, session_id: str, role: str, content: str, now: datetime) -> int:
        """Store one message; returns its id (ids ascend in insertion order)."""
        result = self._s.execute(
            insert(_t).values(session_id=session_id, role=role, content=content, timestamp=now)
        )
        return result.inserted_primary_key[0]

    def list_for_session(
        self, session_id: str, limit: int | None = None, before_id: int | None = None
    ) -> list[SessionMessage]:
        """The session's messages with ``id < before_id`` (all if None), oldest first.

        With ``limit``, only the newest ``limit`` of them, still returned oldest
        first: a page of a long transcript, read backwards through the
        ``(session_id, id)`` index.
        """
        query = select(_t.c.id, _t.c.session_id, _t.c.role, _t.c.content, _t.c.timestamp).where(
            _t.c.session_id == session_id
        )
        if before_id is not None:
            query = query.where(_t.c.id < before_id)
        if limit is None:
            return [SessionMessage(*row) for row in self._s.execute(query.order_by(_t.c.id))]
        newest_first = self._s.execute(query.order_by(_t.c.id.desc()).limit(limit))
        return [SessionMessage(*row) for row in reversed(newest_first.all())]
