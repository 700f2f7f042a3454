"""SQL of the Google ADK aggregate: ADK sessions, their events, and the app and user states.

Every statement is prepared (``_driver.statements``): the calls of
:class:`~starpod_session.adk_store.AdkStore` run on the fast path. States and
events are JSON text; this module neither parses nor builds it. Ties of
``timestamp`` (events) and ``update_time`` (sessions) are broken by id, in the
column's collation, as ADK's own SQL stores order them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import BigInteger, Table, bindparam, delete, exists, func, insert, select, union_all, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import Executable

from ..._driver.runner import Runner
from ..._driver.statements import Prepared, PreparedShapes
from ...backends import backend_of
from ...backends.base import PackedKind
from ..models import AdkAppStateRow, AdkEventRow, AdkSessionRow, AdkUserStateRow, MessageRow, UsageRow
from ..models import SessionRow as StarpodSessionRow
from .usage import USAGE_COLUMNS

__all__ = ["AdkRepository", "SessionRow"]

_s = AdkSessionRow.__table__
_e = AdkEventRow.__table__
_app = AdkAppStateRow.__table__
_p = StarpodSessionRow.__table__
_m = MessageRow.__table__
_u = UsageRow.__table__
_user = AdkUserStateRow.__table__

#: One ADK session's row: (starpod session id, session state JSON, update_time, revision).
SessionRow = tuple[str, str, float, int]

_session_is = (
    (_s.c.app_name == bindparam("app_name")) & (_s.c.user_id == bindparam("user_id")) & (_s.c.id == bindparam("adk_id"))
)
_SESSION_COLUMNS = (_s.c.session_id, _s.c.state, _s.c.update_time, _s.c.revision)
# get_session's read in one statement: the session row with its app's and user's states.
_SESSION_WITH_STATES = Prepared(
    select(
        *_SESSION_COLUMNS,
        select(_app.c.state).where(_app.c.app_name == _s.c.app_name).scalar_subquery(),
        select(_user.c.state)
        .where(_user.c.app_name == _s.c.app_name, _user.c.user_id == _s.c.user_id)
        .scalar_subquery(),
    ).where(_session_is)
)
# An append's first statement: the session row, and whether it stores the event already. On the servers
# it locks the row, so writers of one session take turns (SQLite's BEGIN IMMEDIATE serialises every writer).
_SESSION_FOR_APPEND = Prepared(
    select(*_SESSION_COLUMNS, exists().where(_e.c.session_id == _s.c.session_id, _e.c.id == bindparam("event_id")))
    .where(_session_is)
    .with_for_update()
)
_SESSION_EXISTS = Prepared(select(exists().where(_session_is)))
_SESSION_ID = Prepared(select(_s.c.session_id).where(_session_is))
_UPDATE_SESSION = Prepared(
    update(_s)
    .where(_session_is)
    .values(state=bindparam("state"), update_time=bindparam("update_time"), revision=_s.c.revision + 1)
)
_DELETE_SESSION = Prepared(delete(_s).where(_session_is))
# An append by a caller that knows the stored revision and the state at it: the row moves on only if it is
# still at that revision of that starpod session and does not store the event yet (its one lookup, and its lock).
_ADVANCE = (
    update(_s)
    .where(
        _session_is,
        _s.c.session_id == bindparam("session_id"),
        _s.c.revision == bindparam("read_revision"),
        ~exists().where(_e.c.session_id == _s.c.session_id, _e.c.id == bindparam("event_id")),
    )
    .values(state=bindparam("state"), update_time=bindparam("update_time"), revision=_s.c.revision + 1)
)
_ADVANCE_SESSION = Prepared(_ADVANCE)

#: ADK's order of a listing: least recently updated first, then user, then id.
_LISTING = (_s.c.update_time, _s.c.user_id, _s.c.id)
_LIST_OF_USER = Prepared(
    select(_s.c.id, _s.c.user_id, _s.c.state, _s.c.update_time)
    .where(_s.c.app_name == bindparam("app_name"), _s.c.user_id == bindparam("user_id"))
    .order_by(*_LISTING),
    stream=True,
)
_LIST_OF_APP = Prepared(
    select(_s.c.id, _s.c.user_id, _s.c.state, _s.c.update_time)
    .where(_s.c.app_name == bindparam("app_name"))
    .order_by(*_LISTING),
    stream=True,
)


def _packed_listing(of_user: bool) -> Prepared:
    """How many sessions a listing holds, and their rows packed by the server into one JSON text (where the
    backend ``packs_rows``): ``[id, state, update_time]`` per session of one user, ``[id, user, state,
    update_time]`` per session of an app, in ADK's listing order."""

    def build(dialect: Dialect) -> Executable:
        keys: list[tuple[Any, PackedKind]] = [(_s.c.id, "text")] + ([] if of_user else [(_s.c.user_id, "text")])
        values = [*keys, (_s.c.state, "json"), (_s.c.update_time, "number")]
        where = [_s.c.app_name == bindparam("app_name")]
        if of_user:
            where.append(_s.c.user_id == bindparam("user_id"))
        return select(func.count(), backend_of(dialect).packed_rows(values, _LISTING)).where(*where)

    return Prepared(build)


_PACKED_OF_USER = _packed_listing(of_user=True)
_PACKED_OF_APP = _packed_listing(of_user=False)

_event_of = _e.c.session_id == bindparam("session_id")
_INSERT_EVENT = Prepared(
    insert(_e).values(
        session_id=bindparam("session_id"),
        id=bindparam("event_id"),
        timestamp=bindparam("timestamp"),
        event_data=bindparam("event_data"),
    )
)
_LATEST_EVENT_ID = Prepared(select(_e.c.id).where(_event_of).order_by(_e.c.timestamp.desc(), _e.c.id.desc()).limit(1))
_DELETE_EVENTS = Prepared(delete(_e).where(_event_of))

_APP_STATE = Prepared(select(_app.c.state).where(_app.c.app_name == bindparam("app_name")))
_APP_STATE_FOR_UPDATE = Prepared(select(_app.c.state).where(_app.c.app_name == bindparam("app_name")).with_for_update())
_SET_APP_STATE = Prepared(
    update(_app)
    .where(_app.c.app_name == bindparam("app_name"))
    .values(state=bindparam("state"), update_time=bindparam("update_time"))
)
_user_is = (_user.c.app_name == bindparam("app_name")) & (_user.c.user_id == bindparam("user_id"))
_USER_STATE = Prepared(select(_user.c.state).where(_user_is))
_USER_STATE_FOR_UPDATE = Prepared(select(_user.c.state).where(_user_is).with_for_update())
_USER_STATES_OF_APP = Prepared(
    select(_user.c.user_id, _user.c.state).where(_user.c.app_name == bindparam("app_name")), stream=True
)
_SET_USER_STATE = Prepared(
    update(_user).where(_user_is).values(state=bindparam("state"), update_time=bindparam("update_time"))
)


def _insert_skipping(table: Table, values: dict[str, Any], key: tuple[str, ...]) -> Prepared:
    """An INSERT of a row keyed by ``key`` that skips a taken key, or fails on it where the backend
    ``conflict_raises`` (MariaDB; :meth:`AdkRepository._inserted` catches that)."""
    columns = [table.c[name] for name in key]
    return Prepared(lambda dialect: backend_of(dialect).insert_skipping_conflict(table, values, columns))


_ENSURE_APP_STATE = _insert_skipping(
    _app, {"app_name": bindparam("app_name"), "state": "{}", "update_time": bindparam("update_time")}, ("app_name",)
)
_ENSURE_USER_STATE = _insert_skipping(
    _user,
    {
        "app_name": bindparam("app_name"),
        "user_id": bindparam("user_id"),
        "state": "{}",
        "update_time": bindparam("update_time"),
    },
    ("app_name", "user_id"),
)
_SESSION_VALUES = {
    "app_name": bindparam("app_name"),
    "user_id": bindparam("user_id"),
    "id": bindparam("adk_id"),
    "session_id": bindparam("session_id"),
    "state": bindparam("state"),
    "create_time": bindparam("now"),
    "update_time": bindparam("now"),
    "revision": 0,
}
_INSERT_SESSION = _insert_skipping(_s, _SESSION_VALUES, ("app_name", "user_id", "id"))


class AdkRepository(Generic[Runner]):
    """Reads and writes the ADK tables; never commits."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection

    # -- sessions ------------------------------------------------------------------

    def session_with_states(
        self, app_name: str, user_id: str, adk_id: str
    ) -> tuple[SessionRow, str | None, str | None] | None:
        """The session's (starpod session id, state JSON, update_time, revision), its app's state JSON and its
        user's (``None`` where none is stored); ``None`` if there is no such session. One statement."""
        row = _SESSION_WITH_STATES.first(self._connection, app_name=app_name, user_id=user_id, adk_id=adk_id)
        return None if row is None else ((row[0], row[1], row[2], row[3]), row[4], row[5])

    def lock_for_append(
        self, app_name: str, user_id: str, adk_id: str, event_id: str
    ) -> tuple[SessionRow, bool] | None:
        """The session's row, locked until the transaction ends (on the servers), and whether it already
        stores an event under ``event_id``; ``None`` if there is no such session. One statement."""
        row = _SESSION_FOR_APPEND.first(
            self._connection, app_name=app_name, user_id=user_id, adk_id=adk_id, event_id=event_id
        )
        return None if row is None else ((row[0], row[1], row[2], row[3]), bool(row[4]))

    def exists(self, app_name: str, user_id: str, adk_id: str) -> bool:
        """Whether (app, user, id) names a stored session."""
        return bool(_SESSION_EXISTS.scalar(self._connection, app_name=app_name, user_id=user_id, adk_id=adk_id))

    def starpod_session_id(self, app_name: str, user_id: str, adk_id: str) -> str | None:
        """The starpod session holding the ADK session's messages, or ``None`` if there is no such session."""
        row = _SESSION_ID.first(self._connection, app_name=app_name, user_id=user_id, adk_id=adk_id)
        return None if row is None else str(row[0])

    def insert_session(self, app_name: str, user_id: str, adk_id: str, session_id: str, state: str, now: float) -> bool:
        """Store a new session at revision 0; False, having stored nothing, when (app, user, id) is taken."""
        return self._inserted(
            _INSERT_SESSION,
            app_name=app_name,
            user_id=user_id,
            adk_id=adk_id,
            session_id=session_id,
            state=state,
            now=now,
        )

    def _inserted(self, statement: Prepared, **values: Any) -> bool:
        """Run an :func:`_insert_skipping` INSERT: whether it stored its row (False: the key was taken)."""
        if not backend_of(self._connection.dialect).conflict_raises:
            return statement.rowcount(self._connection, **values) == 1
        # MariaDB: a refused INSERT undoes only itself.
        try:
            statement.rowcount(self._connection, **values)
        except IntegrityError as error:
            if "Duplicate entry" not in str(error.orig):
                raise
            return False
        return True

    def update_session(self, app_name: str, user_id: str, adk_id: str, state: str, update_time: float) -> None:
        """Store the session's state and update time, and bump its revision."""
        _UPDATE_SESSION.rowcount(
            self._connection, app_name=app_name, user_id=user_id, adk_id=adk_id, state=state, update_time=update_time
        )

    def advance_session(
        self,
        app_name: str,
        user_id: str,
        adk_id: str,
        session_id: str,
        read_revision: int,
        event_id: str,
        state: str,
        update_time: float,
    ) -> bool:
        """Store the session's state and update time and bump its revision, if it is still at ``read_revision``
        of starpod session ``session_id`` and stores no event ``event_id``: whether it did. One statement."""
        changed = _ADVANCE_SESSION.rowcount(
            self._connection,
            app_name=app_name,
            user_id=user_id,
            adk_id=adk_id,
            session_id=session_id,
            read_revision=read_revision,
            event_id=event_id,
            state=state,
            update_time=update_time,
        )
        return changed == 1

    @property
    def appends_in_one_statement(self) -> bool:
        """Whether :meth:`append_in_one` runs here (PostgreSQL: data-modifying CTEs)."""
        return backend_of(self._connection.dialect).writes_in_ctes

    def append_in_one(
        self,
        advance: dict[str, Any],
        event_data: str,
        now: datetime,
        title: str | None,
        messages: Sequence[tuple[str, str, str]],
        usage: dict[str, Any] | None,
    ) -> bool:
        """:meth:`advance_session` (its arguments in ``advance``) and, if it moved the row on, in the same
        statement: the event (``event_data`` at the new update time), the starpod session's activity (and
        ``title`` if it has none), its ``(role, content, key)`` ``messages`` and the usage row of ``usage``
        (``UsageRepository.append``'s columns, the turn included; ``usage_key`` its key), the message
        and usage rows skipped where their keys are taken, as their repositories store them. Whether
        the row moved on (if not, nothing is written). Only where :attr:`appends_in_one_statement`, as the
        first statement of the transaction: the statement is then a transaction of its own (PostgreSQL's
        autocommit; its BEGIN and COMMIT are two round trips), the call's writes being all in it."""
        values = dict(advance, event_data=event_data, now=now)
        if title is not None:
            values["title"] = title
        for index, (role, content, key) in enumerate(messages):
            values[f"role_{index}"], values[f"content_{index}"], values[f"key_{index}"] = role, content, key
        if usage is not None:
            values.update({f"usage_{name}": value for name, value in usage.items()})
        shape = (len(messages), title is not None, usage is not None)
        connection = self._connection
        with backend_of(connection.dialect).statement_alone(connection.connection.dbapi_connection):
            return bool(_APPEND_IN_ONE[shape].scalar(connection, **values))

    def delete_session(self, app_name: str, user_id: str, adk_id: str, session_id: str) -> None:
        """Delete the session's events and its row (the starpod session is the caller's to delete)."""
        _DELETE_EVENTS.rowcount(self._connection, session_id=session_id)
        _DELETE_SESSION.rowcount(self._connection, app_name=app_name, user_id=user_id, adk_id=adk_id)

    def list_sessions(self, app_name: str, user_id: str | None) -> list[tuple[str, str, str, float]]:
        """(id, user, state JSON, update_time) of the app's sessions (or one user's), in ADK's listing order."""
        if user_id is None:
            return _LIST_OF_APP.rows(self._connection, app_name=app_name)
        return _LIST_OF_USER.rows(self._connection, app_name=app_name, user_id=user_id)

    @property
    def packs_listings(self) -> bool:
        """Whether :meth:`packed_sessions` runs here (the backend ``packs_rows``: MariaDB)."""
        return backend_of(self._connection.dialect).packs_rows

    def packed_sessions(self, app_name: str, user_id: str | None) -> tuple[int, str | None]:
        """What :meth:`list_sessions` reads, packed by the server into one JSON text (only where
        :attr:`packs_listings`): how many sessions there are, and a JSON array of ``[id, state,
        update_time]`` per session of one user or ``[id, user, state, update_time]`` per session of the
        app, in the same order. The text is ``None`` (no sessions, or more than the server packs) or
        cut short (past ``GROUP_CONCAT_MAX_LEN``): the caller checks it holds as many, else reads
        :meth:`list_sessions`."""
        if user_id is None:
            row = _PACKED_OF_APP.first(self._connection, app_name=app_name)
        else:
            row = _PACKED_OF_USER.first(self._connection, app_name=app_name, user_id=user_id)
        assert row is not None, "an aggregate always returns a row"
        return int(row[0]), row[1]

    # -- events --------------------------------------------------------------------

    def insert_event(self, session_id: str, event_id: str, timestamp: float, event_data: str) -> None:
        """Store one event's JSON."""
        _INSERT_EVENT.rowcount(
            self._connection, session_id=session_id, event_id=event_id, timestamp=timestamp, event_data=event_data
        )

    def latest_event_id(self, session_id: str) -> str | None:
        """The id of the session's last event in (timestamp, id) order, or ``None`` without events."""
        row = _LATEST_EVENT_ID.first(self._connection, session_id=session_id)
        return None if row is None else str(row[0])

    def events(self, session_id: str, *, recent: int | None = None, after: float | None = None) -> list[str]:
        """The JSON of the session's events in (timestamp, id) order.

        ``after`` keeps those with ``timestamp >= after``; ``recent`` the last
        ``recent`` of those (read backwards through ``idx_adk_events_session_time``).
        """
        rows = _events(recent is not None, after is not None).rows(
            self._connection, session_id=session_id, recent=recent, after=after
        )
        if recent is not None:
            rows.reverse()
        return [row[0] for row in rows]

    # -- app and user state ----------------------------------------------------------

    def app_state(self, app_name: str, *, for_update: bool = False) -> str | None:
        """The app's state JSON, or ``None`` when none was ever stored."""
        statement = _APP_STATE_FOR_UPDATE if for_update else _APP_STATE
        row = statement.first(self._connection, app_name=app_name)
        return None if row is None else str(row[0])

    def user_state(self, app_name: str, user_id: str, *, for_update: bool = False) -> str | None:
        """The user's state JSON in the app, or ``None`` when none was ever stored."""
        statement = _USER_STATE_FOR_UPDATE if for_update else _USER_STATE
        row = statement.first(self._connection, app_name=app_name, user_id=user_id)
        return None if row is None else str(row[0])

    def user_states(self, app_name: str) -> dict[str, str]:
        """User id → state JSON, for every user of the app with a stored state."""
        return {str(row[0]): str(row[1]) for row in _USER_STATES_OF_APP.rows(self._connection, app_name=app_name)}

    def lock_app_state(self, app_name: str, now: float) -> str:
        """The app's state JSON, its row created (``{}``) if missing and locked until the transaction ends."""
        self._inserted(_ENSURE_APP_STATE, app_name=app_name, update_time=now)
        state = self.app_state(app_name, for_update=True)
        assert state is not None, "the row was just ensured"
        return state

    def lock_user_state(self, app_name: str, user_id: str, now: float) -> str:
        """The user's state JSON, its row created (``{}``) if missing and locked until the transaction ends."""
        self._inserted(_ENSURE_USER_STATE, app_name=app_name, user_id=user_id, update_time=now)
        state = self.user_state(app_name, user_id, for_update=True)
        assert state is not None, "the row was just ensured"
        return state

    def set_app_state(self, app_name: str, state: str, now: float) -> None:
        """Store the app's state JSON (its row exists: :meth:`lock_app_state`)."""
        _SET_APP_STATE.rowcount(self._connection, app_name=app_name, state=state, update_time=now)

    def set_user_state(self, app_name: str, user_id: str, state: str, now: float) -> None:
        """Store the user's state JSON (its row exists: :meth:`lock_user_state`)."""
        _SET_USER_STATE.rowcount(self._connection, app_name=app_name, user_id=user_id, state=state, update_time=now)


@functools.cache
def _events(recent: bool, after: bool) -> Prepared:
    """The events statement: all (oldest first), those from a time on, or the newest N of either (newest first)."""
    query = select(_e.c.event_data).where(_event_of)
    if after:
        query = query.where(_e.c.timestamp >= bindparam("after", type_=_e.c.timestamp.type))
    if not recent:
        return Prepared(query.order_by(_e.c.timestamp, _e.c.id), stream=True)
    return Prepared(
        query.order_by(_e.c.timestamp.desc(), _e.c.id.desc()).limit(bindparam("recent", type_=BigInteger)),
        stream=True,
    )


#: An append in one statement, per (messages, whether it titles the session, whether it has usage).
_APPEND_IN_ONE: PreparedShapes[tuple[int, bool, bool]] = PreparedShapes(
    lambda shape, dialect: _append_in_one(*shape, dialect)
)


def _bound(table: Table, column: str, name: str | None = None) -> Any:
    """A parameter named ``name`` (the column's name by default) typed as ``table.column``."""
    return bindparam(name or column, type_=table.c[column].type)


def _append_in_one(messages: int, titled: bool, with_usage: bool, dialect: Dialect) -> Executable:
    """``WITH moved AS (the guarded UPDATE ... RETURNING session_id)``, the other rows each an
    ``INSERT ... SELECT ... FROM moved`` (or an ``UPDATE ... FROM moved``), counting ``moved``."""
    backend = backend_of(dialect)
    moved = _ADVANCE.returning(_s.c.session_id).cte("moved")
    session_id = moved.c.session_id
    writes = [
        insert(_e)
        .from_select(
            ["session_id", "id", "timestamp", "event_data"],
            select(
                session_id,
                _bound(_e, "id", "event_id"),
                _bound(_e, "timestamp", "update_time"),
                _bound(_e, "event_data"),
            ),
        )
        .cte("event")
    ]
    if messages:
        activity: dict[str, Any] = {"last_message_at": _bound(_m, "timestamp", "now")}
        if titled:
            activity["title"] = func.coalesce(_p.c.title, _bound(_p, "title"))
        writes.append(update(_p).where(_p.c.id == session_id).values(activity).cte("activity"))
        rows = [
            select(
                session_id,
                _bound(_m, "role", f"role_{index}"),
                _bound(_m, "content", f"content_{index}"),
                _bound(_m, "timestamp", "now"),
                _bound(_m, "message_key", f"key_{index}"),
            )
            for index in range(messages)
        ]
        writes.append(
            backend.insert_selected_skipping_conflict(
                _m,
                ["session_id", "role", "content", "timestamp", "message_key"],
                rows[0] if messages == 1 else union_all(*rows).subquery().select(),
                (_m.c.session_id, _m.c.message_key),
            ).cte("messages")
        )
    if with_usage:
        usage = select(session_id, *(_bound(_u, name, f"usage_{name}") for name in USAGE_COLUMNS))
        writes.append(
            backend.insert_selected_skipping_conflict(
                _u, ["session_id", *USAGE_COLUMNS], usage, (_u.c.session_id, _u.c.usage_key)
            ).cte("usage")
        )
    return select(func.count()).select_from(moved).add_cte(*writes)
