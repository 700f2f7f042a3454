"""What PostgreSQL and MariaDB share: READ COMMITTED set at connect, a snapshot's begin, a ping only when idle."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

from .._driver.events import listen_as_own
from .._driver.transaction import driver_execute

__all__ = ["PING_AFTER_IDLE", "SERVER_SNAPSHOT_BEGIN", "SNAPSHOT", "server_engine_options", "set_up_server_engine"]

#: Execution option of a read transaction that must see one snapshot across its
#: statements: on servers it runs at REPEATABLE READ (SQLite's reads always do).
SNAPSHOT = "starpod_snapshot"

#: What begins a :data:`SNAPSHOT` transaction on a server (before its first statement).
SERVER_SNAPSHOT_BEGIN = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"

#: Seconds a server connection may sit unused in the pool and still be handed out without a
#: ping first. A connection used this recently was alive then; one idle longer (a server
#: restarted, an idle timeout, a proxy dropping it) is pinged and replaced if dead.
PING_AFTER_IDLE = 1.0

#: Where a pooled connection keeps when it was last handed back (``record.info``, which
#: SQLAlchemy clears when the driver connection is replaced).
_IDLE_SINCE = "starpod_idle_since"


def server_engine_options(engine_options: dict[str, Any]) -> dict[str, Any]:
    """``engine_options`` with the settings both servers need; returns the ``connect_args`` to fill in."""
    # SQLAlchemy's pool_pre_ping costs a round trip per call; _ping_when_idle (below)
    # pings only a connection that sat unused longer than PING_AFTER_IDLE.
    engine_options.setdefault("pool_pre_ping", False)
    # Set at connect, never per checkout: an execution option would make SQLAlchemy
    # restore the level on check-in, a round trip that fails raw on a lost connection.
    engine_options.setdefault("isolation_level", "READ COMMITTED")
    return dict(engine_options.pop("connect_args", {}))


def set_up_server_engine(engine: Engine, engine_options: dict[str, Any]) -> Engine:
    """The listeners every server engine gets: the idle ping, a snapshot's begin."""
    if not engine_options["pool_pre_ping"]:
        _ping_when_idle(engine)

    @listen_as_own(engine, "begin")
    def begin_snapshot(connection: Any) -> None:
        if connection.get_execution_options().get(SNAPSHOT, False):
            driver_execute(connection.connection.dbapi_connection, SERVER_SNAPSHOT_BEGIN, connection.dialect)

    return engine


def server_transaction_begin(snapshot: bool) -> str | None:
    """:data:`SERVER_SNAPSHOT_BEGIN` for a ``snapshot`` read; otherwise none, as the driver
    begins a transaction at READ COMMITTED with the first statement."""
    return SERVER_SNAPSHOT_BEGIN if snapshot else None


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection on checkout when it sat in the pool over :data:`PING_AFTER_IDLE` seconds.

    A dead one raises ``DisconnectionError``, on which the pool discards it and
    hands out a new connection (SQLAlchemy's checkout protocol). Busy threads reuse
    connections within milliseconds and so never pay the round trip.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def note_idle_since(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None and record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return  # just opened, or used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise DisconnectionError(f"a pooled connection was lost: {error}") from error
            raise
