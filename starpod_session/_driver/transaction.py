"""The driver transaction of prepared work, and the driver connections kept between calls.

``DriverTransaction`` is a pooled driver connection with no SQLAlchemy ``Connection``
around it; ``HeldConnections`` keeps SQLite's checked out between calls.
``driver_execute`` / ``driver_commit`` run a transaction's own statements (its
``BEGIN``, its commit) on the driver, their errors wrapped as SQLAlchemy wraps them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any

from sqlalchemy import Engine, PoolProxiedConnection

from .errors import wrap_driver_error

__all__ = ["DriverTransaction", "HeldConnections", "driver_commit", "driver_execute"]


def driver_execute(driver_connection: Any, statement: str, dialect: Any) -> None:
    """Run a statement on a DBAPI connection, its errors wrapped as SQLAlchemy wraps them."""
    try:
        # A driver tested outside backends/ (one of five): the fast path lies below the backends
        # (they call this to begin), and the shortcut is sqlite3's own API.
        if isinstance(driver_connection, sqlite3.Connection):
            driver_connection.execute(statement)  # sqlite3's shortcut: no cursor to make and close
        else:
            with closing(driver_connection.cursor()) as cursor:
                cursor.execute(statement)
    except dialect.loaded_dbapi.Error as error:
        raise wrap_driver_error(error, dialect, statement=statement, driver_connection=driver_connection) from error


def driver_commit(driver_connection: Any, dialect: Any) -> None:
    """Commit a DBAPI connection's transaction, its errors wrapped as SQLAlchemy wraps them.

    ``connection_invalidated`` says whether the connection was lost (it must not be reused).
    """
    try:
        driver_connection.commit()
    except dialect.loaded_dbapi.Error as error:
        raise wrap_driver_error(error, dialect, driver_connection=driver_connection) from error


class DriverTransaction:
    """A transaction on a pooled driver connection, with no SQLAlchemy ``Connection`` around it.

    It is a ``repositories.runner.StatementRunner``: it offers what prepared
    statements (``statements.py``) use of a ``Connection``: ``dialect``,
    ``connection`` (the pooled connection), ``info`` (the pooled connection's dict,
    the one ``Connection.info`` returns) and ``invalidate``. Work that runs only
    prepared statements skips the ``Connection`` bookkeeping (begin, commit,
    close), which costs more than a SQLite primary-key lookup and a fifth of a
    server call's Python time. It is used only while nobody listens to the
    engine's connection events (``_driver.events``): no event fires for it.
    """

    __slots__ = ("connection", "dialect")

    def __init__(self, engine: Engine, pooled: PoolProxiedConnection) -> None:
        self.dialect = engine.dialect
        self.connection = pooled

    @property
    def info(self) -> dict[Any, Any]:
        """The pooled connection's ``info``: kept with the driver connection across checkouts."""
        return self.connection.info

    def invalidate(self, exception: BaseException | None = None) -> None:
        """Discard the driver connection (it was lost), as ``Connection.invalidate`` does."""
        self.connection.invalidate(exception)


class HeldConnections:
    """Driver connections kept checked out of the engine's pool between calls (``keep`` of them).

    On SQLite a pool checkout and check-in (with its reset ``ROLLBACK``) costs about as much
    as a SQLite write transaction itself; the fast path takes an idle connection
    from this list instead (``list.pop``/``append`` are atomic, no lock needed)
    and checks one out of the pool only when none is idle. At most ``keep``
    connections stay held; more are handed back to the pool. A connection that
    was invalidated (lost) is never kept. :meth:`close` hands every held
    connection back; one still in use then goes back when its call ends.

    The pool holds at most ``pool_size`` connections and a thread waiting for one
    waits on the pool, not on this list: so a connection is handed back to the
    pool rather than kept whenever the pool has none left (someone may be
    waiting), and :meth:`release_if_exhausted` hands the idle ones back before a
    call that needs the pool itself (a call on a ``Connection``).
    """

    __slots__ = ("_checked_out", "_closed", "_engine", "_idle", "_keep", "_overflow")

    def __init__(self, engine: Engine, keep: int) -> None:
        self._engine = engine
        self._idle: list[PoolProxiedConnection] = []
        self._keep = keep
        self._closed = False
        # QueuePool's count of connections out of it (held ones included).
        self._checked_out: Callable[[], int] = getattr(engine.pool, "checkedout", lambda: 0)
        # QueuePool's overflow: negative while it has opened fewer than pool_size (= keep)
        # connections, when none can be missing. Free to ask; ``checkedout`` takes the pool's lock.
        self._overflow: Callable[[], int] = getattr(engine.pool, "overflow", lambda: -1)

    def take(self) -> PoolProxiedConnection:
        """An idle held connection that is still valid, or a new checkout from the pool."""
        while self._idle:
            try:
                pooled = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if pooled.dbapi_connection is not None:  # is_valid, without a property call per call
                return pooled
            pooled.close()
        dialect = self._engine.dialect
        try:
            return self._engine.raw_connection()
        except dialect.loaded_dbapi.Error as error:
            raise wrap_driver_error(error, dialect) from error

    def give_back(self, pooled: PoolProxiedConnection) -> None:
        """Keep ``pooled`` for the next call, or hand it back to the pool."""
        if (
            self._closed
            or pooled.dbapi_connection is None  # invalidated
            or len(self._idle) >= self._keep
            # The pool has none left: a thread may wait on it.
            or (self._overflow() >= 0 and self._checked_out() >= self._keep)
        ):
            pooled.close()
            return
        self._idle.append(pooled)
        if self._closed:  # close() ran meanwhile and may have missed it
            self._release()

    def release_if_exhausted(self) -> None:
        """Hand the idle held connections back if the pool has none left (before a call that needs one)."""
        if self._idle and self._checked_out() >= self._keep:
            self._release()

    def close(self) -> None:
        """Hand every held connection back to the pool; none is kept from now on."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        while True:
            try:
                pooled = self._idle.pop()
            except IndexError:
                return
            pooled.close()
