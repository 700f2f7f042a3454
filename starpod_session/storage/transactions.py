"""Running one public call as one transaction: isolation, the fast path on driver connections, retries, error mapping.

:class:`TransactionRunner` is what ``SessionManager`` hands its ``work`` functions
to. It picks the transaction for the kind of work, retries transient lock errors
within ``lock_timeout``, and turns every driver or SQLAlchemy error into our own
:class:`StorageError` / :class:`StorageBusy`, with passwords hidden.

Four kinds of work, checked by the type of the argument ``work`` receives:

- :meth:`~TransactionRunner.write` / :meth:`~TransactionRunner.read`: a SQLAlchemy
  ``Connection`` (any Core statement); reads see one snapshot (REPEATABLE READ on servers).
- :meth:`~TransactionRunner.write_prepared` / :meth:`~TransactionRunner.read_prepared`:
  a :class:`StatementRunner`, which runs only prepared statements
  (``_driver.statements``): a pooled driver connection with no ``Connection``
  around it (``_driver.transaction.DriverTransaction``), on every backend, while nothing but
  the library listens to the engine's connection events; otherwise (and with
  ``fast_path=False``) a ``Connection``, so that listeners get what SQLAlchemy
  promises them (``_driver.events``). A ``Connection``'s bookkeeping costs more
  than the statements themselves on SQLite, and a fifth of a call's Python time
  on a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .._common.urls import redact_text, url_secrets
from .._driver.events import ListenerWatch
from .._driver.runner import StatementRunner
from .._driver.transaction import DriverTransaction, HeldConnections, driver_commit, driver_execute
from ..backends import backend_of_url
from ..backends.deadlines import stop_watching
from ..backends.engine import MYSQL_MAX_ALLOWED_PACKET, READ_ONLY, SNAPSHOT, Database, transaction_begin
from ..errors import StarpodSessionError, StorageBusy, StorageError
from ..retry import RetryPolicy, is_transient
from .advice import advice

__all__ = ["CoreWork", "PreparedWork", "TransactionRunner"]

T = TypeVar("T")
P = ParamSpec("P")
#: Work that may run any Core statement: it gets a real ``Connection``.
CoreWork = Callable[[Connection], T]
#: Work that runs only prepared statements: it gets a :class:`StatementRunner`.
PreparedWork = Callable[[StatementRunner], T]


class TransactionRunner:
    """Runs ``work`` functions in transactions of one engine; each call of a method is one transaction.

    ``lock_timeout`` (seconds) also bounds the retries: none starts once that long
    has passed since the first attempt began. After :meth:`close` every call
    raises :class:`StarpodSessionError`.
    """

    def __init__(
        self, engine: Engine, database: Database, *, retry: RetryPolicy, lock_timeout: float, fast_path: bool = True
    ) -> None:
        self.engine = engine
        self._database = database
        self._retry = retry
        self._lock_timeout = lock_timeout
        self._closed = False
        # Errors the driver raises outside a statement (a connection lost while it is
        # committed or handed back to the pool) reach us unwrapped by SQLAlchemy.
        self._driver_errors: tuple[type[BaseException], ...] = (engine.dialect.loaded_dbapi.Error, OSError)
        # Core connections: an ORM Session would add its own bookkeeping to every call.
        # On servers every connection runs at READ COMMITTED (set once at connect, see
        # engine.py): a write that lost a race on the unique index re-reads the winner's
        # row, which MariaDB's default REPEATABLE READ would hide. Reads of several
        # queries (reports) must see one snapshot: they begin at REPEATABLE READ.
        self._writes = engine
        self._reads = engine.execution_options(**{READ_ONLY: True})
        self._snapshots = engine.execution_options(**{READ_ONLY: True, SNAPSHOT: True})
        # Prepared work runs on driver connections; SQLite's stay checked out between
        # calls (a checkout costs as much as a small transaction), servers' go back to
        # the pool (its checkout pings one that sat idle; see engine.py).
        self._held = HeldConnections(
            engine, keep=_pool_size(engine) if backend_of_url(database.url).holds_connections else 0
        )
        # (read_only, snapshot) -> the statement beginning prepared work's transaction
        # (``engine.transaction_begin``), worked out once: fixed for an engine.
        self._begins: dict[tuple[bool, bool], str | None] = {}
        # Prepared work takes the Core path while anything listens to the engine's
        # connection events (``_driver.events``), and always without the fast path.
        self._observed: Callable[[], bool] = ListenerWatch(engine) if fast_path else _always

    @property
    def target(self) -> str:
        """The database, as a path for SQLite or a URL with the password hidden."""
        return self._database.shown

    @property
    def pool_size(self) -> int:
        """How many connections the engine's pool holds (the manager's ``pool_size``)."""
        return _pool_size(self.engine)

    def close(self) -> None:
        """Release every pooled connection; later calls raise :class:`StarpodSessionError`."""
        self._closed = True
        self._held.close()
        stop_watching(self.engine)
        self.engine.dispose()

    def write(self, work: CoreWork[T]) -> T:
        """Run ``work`` in a write transaction on a ``Connection``."""
        return self._transaction(self._writes, work)

    def read(self, work: CoreWork[T]) -> T:
        """Run ``work`` in a read-only transaction on a ``Connection`` that sees one snapshot."""
        return self._transaction(self._snapshots, work)

    def write_prepared(self, work: PreparedWork[T]) -> T:
        """:meth:`write` for work that runs only prepared statements (``_driver.statements``)."""
        return self.guard(self._attempt_prepared, work, False, False)

    def read_prepared(self, work: PreparedWork[T], *, snapshot: bool = False) -> T:
        """:meth:`read` for work that runs only prepared statements.

        One statement reads one snapshot at any isolation level: on servers, without
        ``snapshot`` it skips the round trip that starts a REPEATABLE READ
        transaction. Work of several statements that must agree passes
        ``snapshot=True`` (SQLite's read transactions always see one snapshot).
        """
        return self.guard(self._attempt_prepared, work, True, snapshot)

    def _attempt_prepared(self, work: PreparedWork[T], read_only: bool, snapshot: bool) -> T:
        """One attempt at prepared work: on a pooled driver connection (``DriverTransaction``) while
        nobody listens, else on a ``Connection`` (``_driver.events``)."""
        # A method, not a closure per call: prepared work is the hot path (a SQLite
        # call costs 10-20 µs in all, and a closure with its cells is a sizeable part).
        if self._observed():
            connections = self._writes if not read_only else self._snapshots if snapshot else self._reads
            return self._attempt_on_connection(connections, work)
        engine, held = self.engine, self._held
        dialect = engine.dialect
        try:
            begin = self._begins[read_only, snapshot]
        except KeyError:
            # Raises for a write on a read-only SQLite file: never kept, raised on every call.
            begin = self._begins[read_only, snapshot] = transaction_begin(
                engine, read_only=read_only, snapshot=snapshot
            )
        pooled = held.take()
        driver_connection = pooled.dbapi_connection
        assert driver_connection is not None  # just checked out: valid
        committing = committed = False
        try:
            if begin is not None:
                driver_execute(driver_connection, begin, dialect)
            result = work(DriverTransaction(engine, pooled))
            committing = True
            driver_commit(driver_connection, dialect)
            committed = True
            return result
        except DBAPIError as error:
            if error.connection_invalidated and pooled.is_valid:
                pooled.invalidate(error)  # lost: never handed out again
            self._raise_if_lost_before_commit(error, committing)
            raise
        finally:
            try:
                if not committed and pooled.is_valid:
                    driver_connection.rollback()
            except self._driver_errors:
                pooled.invalidate()
            finally:
                held.give_back(pooled)

    def _transaction(self, engine: Engine, work: CoreWork[T]) -> T:
        return self.guard(self._attempt_on_connection, engine, work)

    def _attempt_on_connection(self, engine: Engine, work: CoreWork[T]) -> T:
        """One attempt at ``work`` in a transaction on a ``Connection`` of ``engine`` (its execution options)."""
        self._held.release_if_exhausted()  # the connection comes from the pool, not from the held ones
        committing = False
        try:
            with engine.begin() as connection:
                result = work(connection)
                committing = True
            return result
        except DBAPIError as error:
            self._raise_if_lost_before_commit(error, committing)
            raise

    def _raise_if_lost_before_commit(self, error: DBAPIError, committing: bool) -> None:
        """:class:`_LostBeforeCommit` if ``error`` says the connection was gone before the commit began.

        Pooled server connections are not pinged before use (a round trip per call):
        one found dead before the commit is replaced by a new one and the call run
        again, as nothing of it was committed. (Not a statement too large for
        MariaDB's packet: the server drops the connection for it, and would again.)
        """
        if not committing and self._lost(error) and not _packet_hint(error):
            raise _LostBeforeCommit(error) from error

    def _lost(self, error: DBAPIError) -> bool:
        """Whether ``error`` says the connection to the server is gone."""
        if error.connection_invalidated:
            return True
        orig = error.orig
        return isinstance(orig, self.engine.dialect.loaded_dbapi.Error) and bool(
            self.engine.dialect.is_disconnect(orig, None, None)
        )

    def guard(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``call(*args, **kwargs)``, retrying transient lock errors; never let a driver error out raw.

        Retries stop once ``lock_timeout`` has passed since the first attempt began
        (each lock wait is itself bounded by it), or after the policy's attempts when
        it caps them (``RetryPolicy(attempts=N)``; by default it does not).
        """
        if self._closed:
            raise StarpodSessionError(f"this SessionManager ({self.target}) is closed; open a new one")
        failures = 0
        reconnected = False
        started = time.monotonic()
        while True:
            try:
                return call(*args, **kwargs)
            except StarpodSessionError:
                raise
            except _LostBeforeCommit as lost:
                if reconnected:  # a new connection was lost too: the server is gone
                    raise StorageError(
                        f"database error on {self.target}: {self._driver_text(lost.error.orig)}{advice(lost.error)}"
                    ) from lost.error
                reconnected = True
                # The other idle connections went with the server most likely:
                # open new ones rather than find each dead one by a failed call.
                self.engine.dispose()
            except DBAPIError as error:
                if not is_transient(error):
                    text = self._driver_text(error.orig)
                    raise StorageError(
                        f"database error on {self.target}: {text}{_packet_hint(error)}{advice(error)}"
                    ) from error
                failures += 1
                waited = time.monotonic() - started
                capped = self._retry.attempts is not None and failures >= self._retry.attempts
                if capped or waited >= self._lock_timeout:
                    raise StorageBusy(
                        f"{self.target} stayed locked for {waited:.1f} s through {failures} attempts "
                        f"(lock_timeout {self._lock_timeout:g} s): {self._driver_text(error.orig)}"
                    ) from error
                self._retry.pause(failures)
            except PoolTimeout as error:
                # Already waited lock_timeout for a connection: not retried.
                raise StorageBusy(
                    f"{self.target}: every connection of this SessionManager (pool_size={_pool_size(self.engine)}) "
                    f"stayed in use for {self._lock_timeout:g} s (lock_timeout); pass a larger pool_size= "
                    "or run fewer threads"
                ) from error
            except SQLAlchemyError as error:
                raise StorageError(
                    f"database error on {self.target}: {self._driver_text(error)}{advice(error)}"
                ) from error
            except self._driver_errors as error:
                # The commit may or may not have happened: not retried.
                raise StorageError(
                    f"database error on {self.target}: {self._driver_text(error)}{advice(error)}"
                ) from error

    def _driver_text(self, error: BaseException | None) -> str:
        """A driver's error text with the URL's passwords hidden (drivers may quote the connection string)."""
        return redact_text(str(error), url_secrets(self._database.url))


def _always() -> bool:
    return True


def _pool_size(engine: Engine) -> int:
    """How many connections the engine's pool holds (QueuePool, which ``engine.py`` configures)."""
    size = getattr(engine.pool, "size", None)
    return size() if callable(size) else 5


class _LostBeforeCommit(Exception):
    """The server connection was gone before the call's commit: running the call again is safe."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


#: MariaDB refused a statement larger than the server's max_allowed_packet.
_PACKET_REFUSED = 1153
#: MariaDB dropped the connection: while a large statement was being sent, or for any other reason.
_CONNECTION_LOST = frozenset({2006, 2013})
#: Parameters this large make a dropped connection likely to be the packet size.
_LARGE_STATEMENT_BYTES = 1024 * 1024


def _packet_hint(error: DBAPIError) -> str:
    """Name the likely cause when MariaDB refused or dropped a large statement.

    The statement's own error may be the context of a later one (the rollback
    that followed on the dropped connection): the whole chain is looked at.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__context__
    numbers = {_error_number(link) for link in chain}
    large = any(_parameter_bytes(getattr(link, "params", None)) > _LARGE_STATEMENT_BYTES for link in chain)
    if _PACKET_REFUSED not in numbers and not (numbers & _CONNECTION_LOST and large):
        return ""
    return (
        f" (if the statement carried a large value: the server's max_allowed_packet must be at least "
        f"{MYSQL_MAX_ALLOWED_PACKET} bytes; an administrator sets it with "
        f"SET GLOBAL max_allowed_packet = {MYSQL_MAX_ALLOWED_PACKET})"
    )


def _error_number(error: BaseException) -> int | None:
    """The driver's error number (MariaDB drivers put it first), or None."""
    args = getattr(error.orig if isinstance(error, DBAPIError) else error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _parameter_bytes(params: object) -> int:
    """Roughly how many bytes a statement's text and binary parameters carry."""
    if isinstance(params, (str, bytes, bytearray)):
        return len(params)
    if isinstance(params, dict):
        params = list(params.values())
    if isinstance(params, (list, tuple)):
        return sum(map(_parameter_bytes, params))
    return 0
