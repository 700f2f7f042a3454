"""SQL of the ``session_metadata`` aggregate."""

from __future__ import annotations

from datetime import datetime

import attrs
from sqlalchemy import exists, false, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import SessionRow
from ..records import SessionMeta

__all__ = ["SessionRepository", "SessionFilter", "OpenSession"]

_t = SessionRow.__table__
_META_COLUMNS = (
    _t.c.id,
    _t.c.created_at,
    _t.c.last_message_at,
    _t.c.is_closed,
    _t.c.summary,
    _t.c.title,
    _t.c.message_count,
    _t.c.channel,
    _t.c.channel_session_key,
    _t.c.user_id,
    _t.c.is_read,
    _t.c.triggered_by,
)
#: Most recently active first; ties broken by creation time, then id, so the
#: order is total and stable across backends.
_RECENT_FIRST = (_t.c.last_message_at.desc(), _t.c.created_at.desc(), _t.c.id.desc())

OpenSession = tuple[str, datetime]


@attrs.frozen
class SessionFilter:
    """Which sessions :meth:`SessionRepository.list_recent` returns; ``None`` matches any value."""

    user_id: str | None = None
    channel: str | None = None
    is_closed: bool | None = None
    is_read: bool | None = None


class SessionRepository:
    """Reads and writes rows of ``session_metadata``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def insert(
        self,
        *,
        session_id: str,
        channel: str,
        key: str,
        user_id: str,
        triggered_by: str | None,
        now: datetime,
    ) -> None:
        """Insert an open, read session with no messages; created and last active at ``now``."""
        self._s.execute(
            insert(_t).values(
                id=session_id,
                created_at=now,
                last_message_at=now,
                is_closed=False,
                message_count=0,
                channel=channel,
                channel_session_key=key,
                user_id=user_id,
                is_read=True,
                triggered_by=triggered_by,
            )
        )

    def find_open_by_key(self, channel: str, key: str, user_id: str) -> OpenSession | None:
        """The open session of (channel, key, user_id) as ``(id, last_message_at)``, if any.

        There is at most one: ``uq_session_one_open_per_key`` guarantees it, and
        serves this lookup.
        """
        row = self._s.execute(
            select(_t.c.id, _t.c.last_message_at).where(
                _t.c.channel == channel,
                _t.c.channel_session_key == key,
                _t.c.user_id == user_id,
                _t.c.open_slot == 1,
            )
        ).first()
        return None if row is None else (row[0], row[1])

    def insert_unless_open(
        self,
        *,
        session_id: str,
        channel: str,
        key: str,
        user_id: str,
        triggered_by: str | None,
        now: datetime,
    ) -> tuple[str, bool]:
        """Insert a new open session unless the key already has one.

        Returns ``(id of the key's open session, whether it was inserted here)``.
        A concurrent transaction may insert first: the unique index then rejects
        our row, the savepoint undoes just that insert, and the winner's session
        (committed by then, as the index made us wait for it) is returned.
        """
        found = self.find_open_by_key(channel, key, user_id)
        if found is not None:
            return found[0], False
        try:
            with self._s.begin_nested():
                self.insert(
                    session_id=session_id,
                    channel=channel,
                    key=key,
                    user_id=user_id,
                    triggered_by=triggered_by,
                    now=now,
                )
        except IntegrityError:
            found = self.find_open_by_key(channel, key, user_id)
            if found is None:
                raise
            return found[0], False
        return session_id, True

    def get(self, session_id: str) -> SessionMeta | None:
        """The session's metadata, or ``None``."""
        row = self._s.execute(select(*_META_COLUMNS).where(_t.c.id == session_id)).first()
        return None if row is None else SessionMeta(*row)

    def exists(self, session_id: str) -> bool:
        """Whether a session with this id exists (open or closed)."""
        return bool(self._s.execute(select(exists().where(_t.c.id == session_id))).scalar())

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` session ids beginning with ``prefix``, in id order.

        For ids typed by people (the operator command line), not a hot path: a
        ``LIKE`` that may scan the table.
        """
        rows = self._s.execute(
            select(_t.c.id).where(_t.c.id.startswith(prefix, autoescape=True)).order_by(_t.c.id).limit(limit)
        )
        return [row[0] for row in rows]

    def list_recent(self, limit: int, filters: SessionFilter | None = None) -> list[SessionMeta]:
        """Up to ``limit`` sessions matching ``filters`` (every session if None), most recently active first.

        A ``user_id`` or ``channel`` filter walks ``idx_session_user_recent`` or
        ``idx_session_channel_recent`` in order; the flags filter the rows walked.
        """
        filters = filters or SessionFilter()
        where = []
        if filters.user_id is not None:
            where.append(_t.c.user_id == filters.user_id)
        if filters.channel is not None:
            where.append(_t.c.channel == filters.channel)
        if filters.is_closed is not None:
            where.append(_t.c.is_closed == (true() if filters.is_closed else false()))
        if filters.is_read is not None:
            where.append(_t.c.is_read == (true() if filters.is_read else false()))
        rows = self._s.execute(select(*_META_COLUMNS).where(*where).order_by(*_RECENT_FIRST).limit(limit))
        return [SessionMeta(*row) for row in rows]

    def touch(self, session_id: str, now: datetime) -> bool:
        """Set ``last_message_at`` to ``now`` and count one more request; False if no such row."""
        result = self._s.execute(
            update(_t)
            .where(_t.c.id == session_id)
            .values(last_message_at=now, message_count=_t.c.message_count + 1)
        )
        return result.rowcount == 1

    def close(self, session_id: str, summary: str) -> bool:
        """Close the session with ``summary`` (again, if already closed); False if no such row."""
        result = self._s.execute(
            update(_t).where(_t.c.id == session_id).values(is_closed=True, summary=summary)
        )
        return result.rowcount == 1

    def close_if_open(self, session_id: str, summary: str) -> bool:
        """Close the session only if it is still open; True for exactly one of racing callers."""
        result = self._s.execute(
            update(_t)
            .where(_t.c.id == session_id, _t.c.is_closed == false())
            .values(is_closed=True, summary=summary)
        )
        return result.rowcount == 1

    def set_title_if_null(self, session_id: str, title: str) -> bool:
        """Store ``title`` if the session has none; True if it was stored."""
        result = self._s.execute(
            update(_t).where(_t.c.id == session_id, _t.c.title.is_(None)).values(title=title)
        )
        return result.rowcount == 1

    def set_read(self, session_id: str, is_read: bool) -> bool:
        """Set the read flag; False if no such row."""
        result = self._s.execute(
            update(_t).where(_t.c.id == session_id).values(is_read=true() if is_read else false())
        )
        return result.rowcount == 1
