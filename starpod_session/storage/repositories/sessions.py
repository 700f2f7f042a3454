"""SQL of the ``session_metadata`` aggregate."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Generic

import attrs
from sqlalchemy import (
    BigInteger,
    Connection,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import Executable

from ..._driver.runner import Runner
from ..._driver.statements import Prepared
from ...backends import backend_of
from ...errors import StorageBusy
from ...records import SessionMeta
from ..models import SessionRow

__all__ = ["OpenSession", "SessionFilter", "SessionRepository"]

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
    _t.c.is_archived,
)
#: Most recently active first; ties broken by creation time, then id, so the
#: order is total and stable across backends.
_RECENT_FIRST = (_t.c.last_message_at.desc(), _t.c.created_at.desc(), _t.c.id.desc())

OpenSession = tuple[str, datetime]

#: How many times :meth:`SessionRepository.insert_unless_open` tries to insert or
#: find the key's open session before it gives up. Each failed try means another
#: caller opened the key's session and yet another closed it meanwhile: 16 threads
#: opening and closing one key on two cores needed up to 5 tries.
INSERT_TRIES = 20

_id_is = _t.c.id == bindparam("session_id")
_OPEN_SLOT_INDEX = "uq_session_one_open_per_key"
_OPEN_SLOT_COLUMNS = (_t.c.channel, _t.c.channel_session_key, _t.c.user_id, _t.c.open_slot)


def _insert_open(dialect: Dialect) -> Executable:
    """INSERT of a new open session that skips (SQLite, PostgreSQL) or fails (MariaDB) if the key has one."""
    now = bindparam("now", type_=_t.c.created_at.type)
    values = dict(
        id=bindparam("session_id"),
        created_at=now,
        last_message_at=now,
        is_closed=False,
        message_count=0,
        channel=bindparam("channel"),
        channel_session_key=bindparam("key"),
        user_id=bindparam("user_id"),
        is_read=True,
        triggered_by=bindparam("triggered_by", type_=_t.c.triggered_by.type),
    )
    return backend_of(dialect).insert_skipping_conflict(_t, values, _OPEN_SLOT_COLUMNS)


# The hot statements, compiled once per dialect (see ``_prepared``).
_FIND_OPEN = Prepared(
    select(_t.c.id, _t.c.last_message_at).where(
        _t.c.channel == bindparam("channel"),
        _t.c.channel_session_key == bindparam("key"),
        _t.c.user_id == bindparam("user_id"),
        # A literal, not a parameter: the plan knows it is the open slot.
        _t.c.open_slot == literal_column("1"),
    ),
    # Several indexes lead with channel or user_id: a generic plan made on a small
    # new table walked one of them on channel alone once the table had grown.
    replan=True,
)
_INSERT_OPEN = Prepared(_insert_open)
_GET = Prepared(select(*_META_COLUMNS).where(_id_is))
_EXISTS = Prepared(select(exists().where(_id_is)))
_OWNER = Prepared(select(_t.c.user_id).where(_id_is))
# A saved message is activity (it keeps a time-gap session open) but not a request:
# message_count counts touches, as in the original crate.
_MESSAGE_ACTIVITY = Prepared(update(_t).where(_id_is).values(last_message_at=bindparam("now")))
_MESSAGE_ACTIVITY_TITLED = Prepared(
    update(_t)
    .where(_id_is)
    .values(
        last_message_at=bindparam("now"), title=func.coalesce(_t.c.title, bindparam("title", type_=_t.c.title.type))
    )
)
_TOUCH = Prepared(
    update(_t).where(_id_is).values(last_message_at=bindparam("now"), message_count=_t.c.message_count + 1)
)
_CLOSE = Prepared(update(_t).where(_id_is).values(is_closed=True, summary=bindparam("summary")))
_CLOSE_IF_OPEN = Prepared(
    update(_t).where(_id_is, _t.c.is_closed == false()).values(is_closed=True, summary=bindparam("summary"))
)
_SET_TITLE_IF_NULL = Prepared(update(_t).where(_id_is, _t.c.title.is_(None)).values(title=bindparam("title")))
_SET_READ = Prepared(update(_t).where(_id_is).values(is_read=bindparam("is_read")))
_SET_ARCHIVED = Prepared(update(_t).where(_id_is).values(is_archived=bindparam("is_archived")))


@attrs.frozen
class SessionFilter:
    """Which sessions :meth:`SessionRepository.list_recent` returns; ``None`` matches any value."""

    user_id: str | None = None
    channel: str | None = None
    is_closed: bool | None = None
    is_read: bool | None = None
    is_archived: bool | None = None


#: The fields of :class:`SessionFilter`, in order (each listing statement filters on some of them).
_FILTER_FIELDS = tuple(field.name for field in attrs.fields(SessionFilter))


class SessionRepository(Generic[Runner]):
    """Reads and writes rows of ``session_metadata``."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection

    def insert_open(
        self,
        *,
        session_id: str,
        channel: str,
        key: str,
        user_id: str,
        triggered_by: str | None,
        now: datetime,
    ) -> bool:
        """Insert an open, read session with no messages, created and last active at ``now``.

        Returns False, having written nothing, when (channel, key, user_id) already
        has an open session (``uq_session_one_open_per_key``), also one that a
        concurrent transaction inserted and committed while this insert waited for it.
        """
        values = dict(
            session_id=session_id, now=now, channel=channel, key=key, user_id=user_id, triggered_by=triggered_by
        )
        if not backend_of(self._connection.dialect).conflict_raises:
            return _INSERT_OPEN.rowcount(self._connection, **values) == 1
        # MariaDB has no ON CONFLICT for one index: a refused INSERT undoes only itself there.
        try:
            _INSERT_OPEN.rowcount(self._connection, **values)
        except IntegrityError as error:
            if _OPEN_SLOT_INDEX not in str(error.orig):
                raise
            return False
        return True

    def find_open_by_key(self, channel: str, key: str, user_id: str) -> OpenSession | None:
        """The open session of (channel, key, user_id) as ``(id, last_message_at)``, if any.

        There is at most one: ``uq_session_one_open_per_key`` guarantees it, and
        serves this lookup.
        """
        row = _FIND_OPEN.first(self._connection, channel=channel, key=key, user_id=user_id)
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
        A concurrent transaction may insert first: our insert then waits for the
        winner to commit and writes nothing, and the winner's session is returned.
        The winner may be closed again before we read it; then we try to insert
        once more, up to :data:`INSERT_TRIES` times, and raise :class:`StorageBusy`
        if the key's sessions keep opening and closing under us.
        """
        for _ in range(INSERT_TRIES):
            found = self.find_open_by_key(channel, key, user_id)
            if found is not None:
                return found[0], False
            if self.insert_open(
                session_id=session_id, channel=channel, key=key, user_id=user_id, triggered_by=triggered_by, now=now
            ):
                return session_id, True
            # another session holds the key's open slot, or did a moment ago
        raise StorageBusy(
            f"the open session of ({channel!r}, {key!r}, {user_id!r}) was created and closed by other "
            f"callers {INSERT_TRIES} times while this call tried to open it"
        )

    def get(self, session_id: str) -> SessionMeta | None:
        """The session's metadata, or ``None``."""
        return _GET.record(self._connection, SessionMeta, session_id=session_id)

    def exists(self, session_id: str) -> bool:
        """Whether a session with this id exists (open or closed)."""
        return bool(_EXISTS.scalar(self._connection, session_id=session_id))

    def owner(self, session_id: str) -> str | None:
        """The session's ``user_id``, or ``None`` if there is no such session."""
        row = _OWNER.first(self._connection, session_id=session_id)
        return None if row is None else row[0]

    def record_message_activity(self, session_id: str, now: datetime, title: str | None) -> bool:
        """For a message saved at ``now``: set ``last_message_at``, and ``title`` if the session has none.

        One statement, which also tells whether the session exists (False if not).
        """
        if title is None:
            return _MESSAGE_ACTIVITY.rowcount(self._connection, session_id=session_id, now=now) == 1
        return _MESSAGE_ACTIVITY_TITLED.rowcount(self._connection, session_id=session_id, now=now, title=title) == 1

    def ids_starting_with(self: SessionRepository[Connection], prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` session ids beginning with ``prefix``, in id order.

        For ids typed by people (the operator command line), not a hot path: a
        ``LIKE`` that may scan the table.
        """
        rows = self._connection.execute(
            select(_t.c.id).where(_t.c.id.startswith(prefix, autoescape=True)).order_by(_t.c.id).limit(limit)
        )
        return [row[0] for row in rows]

    def list_recent(self, limit: int, filters: SessionFilter | None = None) -> list[SessionMeta]:
        """Up to ``limit`` sessions matching ``filters`` (every session if None), most recently active first.

        A ``user_id`` or ``channel`` filter walks ``idx_session_user_recent`` or
        ``idx_session_channel_recent`` in order, no filter ``idx_session_recent``;
        the flags filter the rows walked. ``is_archived`` is such a flag on purpose:
        the walk reads each row it returns anyway, archived sessions are few and
        mostly old (the walk starts at the newest), and leading these indexes with
        it would make listing archived and unarchived sessions together sort.
        """
        values = (
            {}
            if filters is None
            else {name: value for name in _FILTER_FIELDS if (value := getattr(filters, name)) is not None}
        )
        return _listing(tuple(values)).records(self._connection, SessionMeta, limit=limit, **values)

    def touch(self, session_id: str, now: datetime) -> bool:
        """Set ``last_message_at`` to ``now`` and count one more request; False if no such row."""
        return _TOUCH.rowcount(self._connection, session_id=session_id, now=now) == 1

    def close(self, session_id: str, summary: str) -> bool:
        """Close the session with ``summary`` (again, if already closed); False if no such row."""
        return _CLOSE.rowcount(self._connection, session_id=session_id, summary=summary) == 1

    def close_if_open(self, session_id: str, summary: str) -> bool:
        """Close the session only if it is still open; True for exactly one of racing callers."""
        return _CLOSE_IF_OPEN.rowcount(self._connection, session_id=session_id, summary=summary) == 1

    def set_title_if_null(self, session_id: str, title: str) -> bool:
        """Store ``title`` if the session has none; True if it was stored."""
        return _SET_TITLE_IF_NULL.rowcount(self._connection, session_id=session_id, title=title) == 1

    def set_read(self, session_id: str, is_read: bool) -> bool:
        """Set the read flag; False if no such row."""
        return _SET_READ.rowcount(self._connection, session_id=session_id, is_read=is_read) == 1

    def set_archived(self, session_id: str, is_archived: bool) -> bool:
        """Set the archived flag; False if no such row."""
        return _SET_ARCHIVED.rowcount(self._connection, session_id=session_id, is_archived=is_archived) == 1


@functools.cache
def _listing(filtered: tuple[str, ...]) -> Prepared:
    """The listing statement filtering on the named :class:`SessionFilter` fields (one per combination)."""
    where = [_t.c[name] == bindparam(name) for name in filtered]
    limit = bindparam("limit", type_=BigInteger)
    return Prepared(select(*_META_COLUMNS).where(*where).order_by(*_RECENT_FIRST).limit(limit))
