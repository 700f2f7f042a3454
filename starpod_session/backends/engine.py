"""Turning a file path or a SQLAlchemy URL into a configured engine."""

from __future__ import annotations

import math
import os
import sqlite3
import time
import weakref
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError, NoSuchModuleError

from .._common.folders import ensure_folder
from .._common.urls import redact_text, redact_url
from .._driver.events import listen_as_own
from .._driver.transaction import driver_execute
from ..errors import InvalidInput, StarpodSessionError, StorageError

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_SQLITE_CACHE_MIB",
    "MAX_POOL_SIZE",
    "MAX_SQLITE_CACHE_MIB",
    "MYSQL_MAX_ALLOWED_PACKET",
    "READ_ONLY",
    "SNAPSHOT",
    "SQLITE_SYNCHRONOUS_MODES",
    "Database",
    "check_pool_size",
    "check_sqlite_cache_mib",
    "create_storage_engine",
    "is_read_only",
    "sqlite_transaction_begin",
    "to_database",
    "to_url",
    "transaction_begin",
]


#: Execution option marking a transaction that only reads (SQLite then takes no write lock).
READ_ONLY = "starpod_read_only"

#: Execution option of a read transaction that must see one snapshot across its
#: statements: on servers it runs at REPEATABLE READ (SQLite's reads always do).
SNAPSHOT = "starpod_snapshot"

#: What begins a :data:`SNAPSHOT` transaction on a server (before its first statement).
SERVER_SNAPSHOT_BEGIN = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"

SQLITE_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

#: Seconds a statement waits for a lock held by another transaction before the
#: database reports it (SQLite ``busy_timeout``, PostgreSQL ``lock_timeout``,
#: MariaDB ``innodb_lock_wait_timeout``); also the budget of a call's retries.
DEFAULT_LOCK_TIMEOUT = 30.0

#: How many connections a manager's pool holds at most (opened as threads need them, then kept):
#: as many as the default ``ThreadPoolExecutor`` (and so ``asyncio.to_thread``) runs threads.
DEFAULT_POOL_SIZE = 32

#: Seconds a server connection may sit unused in the pool and still be handed out without a
#: ping first. A connection used this recently was alive then; one idle longer (a server
#: restarted, an idle timeout, a proxy dropping it) is pinged and replaced if dead.
PING_AFTER_IDLE = 1.0

#: How many MiB of a SQLite file's pages each connection keeps in memory (``PRAGMA cache_size``).
#: SQLite's own default, 2 MiB, holds too few of a large file's index pages: past it
#: every page a look-up's B-tree walk reads again is a system call and a copy, most
#: of what the look-up grows by from a thousand rows to a million.
DEFAULT_SQLITE_CACHE_MIB = 8

#: The largest ``sqlite_cache_mib`` taken (64 GiB per connection).
MAX_SQLITE_CACHE_MIB = 1 << 16

#: The largest ``pool_size`` taken: beyond it a server runs out of connections long before.
MAX_POOL_SIZE = 1000

#: The packet size the MariaDB client allows, and the server's ``max_allowed_packet``
#: this library needs: a message of 16 MiB plus its statement must fit in one packet.
MYSQL_MAX_ALLOWED_PACKET = 64 * 1024 * 1024


#: The database forms this library takes, for messages.
ACCEPTED_FORMS = (
    "a file path (SQLite), sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST/DATABASE "
    "or mysql+pymysql://USER:PASSWORD@HOST/DATABASE (also mariadb+pymysql://)"
)

#: The driver used for a URL that names a backend without one (``postgresql://``):
#: the one this library's extras install, not SQLAlchemy's default (psycopg2, mysqlclient).
_DEFAULT_DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}

#: The extra that installs the drivers of each server backend.
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}

#: SQLite engines opened read-only (a write transaction on one is refused: :func:`sqlite_transaction_begin`).
_READ_ONLY_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


@attrs.frozen
class Database:
    """A database named once: its URL, checked usable by :func:`to_url`, and how messages show it.

    ``shown`` is the file path for SQLite and the URL with every password hidden
    otherwise, worked out when the database is named (:func:`to_database`), never again.
    """

    url: URL
    shown: str


def to_database(target: str | os.PathLike[str] | URL | Database) -> Database:
    """The :class:`Database` ``target`` names, its errors those of :func:`to_url`.

    A :class:`Database` this function made is returned as it is (the URL is checked
    and its password hidden once); one made by hand is checked like a URL, so it
    can skip neither the checks nor the hiding of its password.
    """
    if isinstance(target, Database):
        if target in _CHECKED_DATABASES:
            return target
        target = target.url
    url = to_url(target)
    database = Database(url, str(url.database) if url.get_backend_name() == "sqlite" else redact_url(url))
    _CHECKED_DATABASES.add(database)
    return database


#: The :class:`Database` values :func:`to_database` made (by identity).
_CHECKED_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def to_url(target: str | os.PathLike[str] | URL) -> URL:
    """A SQLAlchemy URL for ``target``: a URL as it is, anything else as a SQLite file path.

    :class:`InvalidInput` for an unknown scheme or driver, or an async driver;
    :class:`StarpodSessionError` naming the extra to install when the driver is missing.
    """
    if isinstance(target, str) and "://" in target:
        try:
            target = make_url(target)
        except Exception as error:  # sqlalchemy.exc.ArgumentError and friends
            # The parser's message quotes the whole URL, password included.
            raise InvalidInput(
                "db_path", f"not a valid database URL ({redact_text(str(error))}); expected {ACCEPTED_FORMS}"
            ) from None
    if isinstance(target, URL):
        return _usable(target)
    if not isinstance(target, (str, os.PathLike)):
        raise InvalidInput("db_path", f"expected a path or a URL, got {type(target).__name__}")
    path = Path(target).expanduser()
    if str(target) in ("", ":memory:"):
        raise InvalidInput("db_path", "give a file path: an in-memory database is private to one connection")
    return URL.create("sqlite+pysqlite", database=str(path.resolve()))


def _usable(url: URL) -> URL:
    """``url`` with our default driver filled in, once its dialect and driver are known to load."""
    backend = url.get_backend_name()
    if "+" not in url.drivername and backend in _DEFAULT_DRIVERS:
        url = url.set(drivername=f"{backend}+{_DEFAULT_DRIVERS[backend]}")
    if backend not in ("sqlite", *_DEFAULT_DRIVERS):
        raise InvalidInput(
            "db_path", f"unknown database URL scheme {url.drivername!r} in {redact_url(url)}; expected {ACCEPTED_FORMS}"
        )
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise InvalidInput(
            "db_path", f"unknown driver {url.get_driver_name()!r} in {redact_url(url)}; expected {ACCEPTED_FORMS}"
        ) from None
    if getattr(dialect, "is_async", False):
        raise InvalidInput(
            "db_path",
            f"{url.drivername} is an async driver, which this synchronous library does not support; "
            f"expected {ACCEPTED_FORMS}",
        )
    try:
        dialect.import_dbapi()
    except ImportError as error:
        ours = _DEFAULT_DRIVERS.get(backend)
        if ours is None:  # SQLite: the driver is Python's own sqlite3 module
            advice = "this Python was built without its sqlite3 module"
        else:
            advice = f"pip install 'starpod-session[{_EXTRAS[backend]}]'"
            if url.get_driver_name() != ours:
                advice += f" and use {backend}+{ours}://... (or install the {error.name} module yourself)"
        driver = url.get_driver_name()
        raise StarpodSessionError(
            f"the {driver} driver for {redact_url(url)} is not installed (no module named {error.name!r}): {advice}"
        ) from None
    return url


def check_pool_size(pool_size: object) -> int:
    """``pool_size`` as a count of connections from 1 to :data:`MAX_POOL_SIZE`, else :class:`InvalidInput`."""
    return _check_whole_number("pool_size", pool_size, 1, MAX_POOL_SIZE, "connections")


def check_sqlite_cache_mib(size: object) -> int:
    """``sqlite_cache_mib`` as MiB from 1 to :data:`MAX_SQLITE_CACHE_MIB`, else :class:`InvalidInput`."""
    return _check_whole_number("sqlite_cache_mib", size, 1, MAX_SQLITE_CACHE_MIB, "MiB")


def _check_whole_number(field: str, value: object, low: int, high: int, unit: str) -> int:
    """``value`` as an ``int`` (not a bool) from ``low`` to ``high`` ``unit``, else :class:`InvalidInput`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"expected a number of {unit} (int), got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInput(field, f"expected {low} to {high} {unit}, got {value}")
    return value


def is_read_only(engine: Engine) -> bool:
    """Whether ``engine`` is a SQLite engine opened read-only (its file or folder is not writable)."""
    return engine in _READ_ONLY_ENGINES


def create_storage_engine(
    url: URL,
    *,
    sqlite_synchronous: str = "NORMAL",
    sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    pool_size: int = DEFAULT_POOL_SIZE,
    **engine_options: Any,
) -> Engine:
    """An engine for ``url`` with the settings this library relies on.

    SQLite: the file is created readable by its owner only (``0600``; SQLite gives
    its ``-wal`` and ``-shm`` files the same mode) with its folders; every
    connection runs with ``foreign_keys=ON``, WAL, ``busy_timeout`` =
    ``lock_timeout``, the given ``synchronous`` level and a page cache of
    ``sqlite_cache_mib`` MiB, and write transactions
    start with ``BEGIN IMMEDIATE`` so that two writers queue on the lock instead of
    failing half-way. Servers: a connection that sat unused in the pool longer than
    :data:`PING_AFTER_IDLE` is pinged before it is handed out (and replaced if a
    restarted server or an idle timeout closed it), one used more recently is not
    (a round trip per call); a call that finds its connection dead before its
    commit all the same is run again by ``TransactionRunner`` on a new one. Every
    connection is set once, when it opens, to
    READ COMMITTED and to wait at most ``lock_timeout`` for a row lock, so that
    handing a connection back to the pool costs no round trip; a transaction run
    with the :data:`SNAPSHOT` option starts at REPEATABLE READ.

    Every backend: the pool holds at most ``pool_size`` connections, opened when
    a thread needs one and none free, and all kept once opened (no overflow
    connections closed on return and reopened on the next burst); a thread that
    finds all of them in use waits for one at most ``lock_timeout`` seconds
    (then SQLAlchemy's pool ``TimeoutError``).

    A SQLite file that exists but that this process may not write (the file or its
    folder is read-only) is opened read-only: reads work, and a write transaction
    raises :class:`StorageError` saying so.
    """
    if not isinstance(sqlite_synchronous, str):
        raise InvalidInput("sqlite_synchronous", f"expected a str, got {type(sqlite_synchronous).__name__}")
    sqlite_cache_mib = check_sqlite_cache_mib(sqlite_cache_mib)
    # QueuePool on every backend (SQLAlchemy's default for a SQLite file too): every
    # connection kept, so a burst of N threads does not close and reopen N - 5 of them
    # (SQLAlchemy's overflow), which cost a connect per call on the servers.
    engine_options.setdefault("pool_size", check_pool_size(pool_size))
    engine_options.setdefault("max_overflow", 0)
    engine_options.setdefault("pool_timeout", lock_timeout)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_synchronous, sqlite_cache_mib, lock_timeout, engine_options)
    # SQLAlchemy's pool_pre_ping costs a round trip per call; _ping_when_idle (below)
    # pings only a connection that sat unused longer than PING_AFTER_IDLE.
    engine_options.setdefault("pool_pre_ping", False)
    # Set at connect, never per checkout: an execution option would make SQLAlchemy
    # restore the level on check-in, a round trip that fails raw on a lost connection.
    engine_options.setdefault("isolation_level", "READ COMMITTED")
    connect_args = dict(engine_options.pop("connect_args", {}))
    mysql = url.get_backend_name() in ("mysql", "mariadb")
    if mysql:
        url = url.update_query_dict({"charset": "utf8mb4"})
        if url.get_driver_name() == "pymysql":
            connect_args.setdefault("max_allowed_packet", MYSQL_MAX_ALLOWED_PACKET)
    elif url.get_backend_name() == "postgresql":
        # In the startup packet (no round trip); after any options the URL gives, so ours wins.
        given = connect_args.get("options", url.query.get("options", ""))
        given = " ".join(given) if isinstance(given, tuple) else given
        connect_args["options"] = f"{given} -c lock_timeout={_milliseconds(lock_timeout)}".strip()
    # The pool's reset on return is a ROLLBACK, which pymysql sends even when the call's
    # transaction committed: a round trip per call for nothing (psycopg skips it itself).
    # The listener below rolls back only a transaction the server says is open.
    reset_if_open = mysql and url.get_driver_name() == "pymysql" and "pool_reset_on_return" not in engine_options
    if reset_if_open:
        engine_options["pool_reset_on_return"] = None
    # Looked up on the module at each call, not imported: tracing (OpenTelemetry's SQLAlchemy
    # instrumentation) wraps sqlalchemy.create_engine, often after this module was imported.
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, **engine_options)
    if reset_if_open:

        @event.listens_for(engine, "reset")
        def roll_back_if_open(dbapi_connection: Any, _record: Any, reset_state: Any) -> None:
            # The server reports in every reply whether a transaction is open; pymysql keeps it.
            status = getattr(dbapi_connection, "server_status", None)
            if reset_state.asyncio_safe and (status is None or status & _MYSQL_IN_TRANSACTION):
                dbapi_connection.rollback()

    if mysql:

        @event.listens_for(engine, "connect")
        def limit_lock_waits(dbapi_connection: Any, _record: Any) -> None:
            # Whole seconds, at least 1: the server's own unit and minimum.
            seconds = max(1, math.ceil(lock_timeout))
            with closing(dbapi_connection.cursor()) as cursor:
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")

    if not engine_options["pool_pre_ping"]:
        _ping_when_idle(engine)

    @listen_as_own(engine, "begin")
    def begin_snapshot(connection: Any) -> None:
        if connection.get_execution_options().get(SNAPSHOT, False):
            driver_execute(connection.connection.dbapi_connection, SERVER_SNAPSHOT_BEGIN, connection.dialect)

    return engine


#: Where a pooled connection keeps when it was last handed back (``record.info``, which
#: SQLAlchemy clears when the driver connection is replaced).
_IDLE_SINCE = "starpod_idle_since"


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


#: The bit of MariaDB's server status that says a transaction is open (``SERVER_STATUS_IN_TRANS``).
_MYSQL_IN_TRANSACTION = 1


def _milliseconds(seconds: float) -> int:
    """A positive whole number of milliseconds (0 would mean "wait for ever" to SQLite and PostgreSQL)."""
    return max(1, math.ceil(seconds * 1000))


def _sqlite_engine(
    url: URL, synchronous: str, cache_mib: int, lock_timeout: float, engine_options: dict[str, Any]
) -> Engine:
    synchronous = synchronous.upper()
    if synchronous not in SQLITE_SYNCHRONOUS_MODES:
        raise InvalidInput("sqlite_synchronous", f"expected one of {', '.join(SQLITE_SYNCHRONOUS_MODES)}")
    if not url.database or url.database == ":memory:":
        raise InvalidInput("db_path", "give a file path: an in-memory database is private to one connection")
    path = Path(url.database)
    ensure_folder(path.parent, "db_path")
    read_only_uri = _read_only_uri(path)
    if read_only_uri is not None:
        engine_options["creator"] = lambda: sqlite3.connect(read_only_uri, uri=True, check_same_thread=False)
    else:
        _create_private_file(url.database)
    # sqlalchemy.create_engine, not an imported name: see create_storage_engine.
    engine = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False}, **engine_options)
    if read_only_uri is not None:
        _READ_ONLY_ENGINES.add(engine)
    busy_timeout = _milliseconds(lock_timeout)

    @event.listens_for(engine, "connect")
    def configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of the
        # sqlite3 module, which would start deferred transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if read_only_uri is None:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute(f"PRAGMA cache_size = {-1024 * cache_mib}")  # negative: KiB, not pages
        cursor.close()

    @listen_as_own(engine, "begin")
    def begin_transaction(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        # On the driver's connection: a Core execution would cost more than the BEGIN itself.
        driver_execute(
            connection.connection.dbapi_connection, sqlite_transaction_begin(engine, read_only), connection.dialect
        )

    return engine


def _read_only_uri(path: Path) -> str | None:
    """The SQLite URI that opens ``path`` read-only, or ``None`` when this process may write it.

    A WAL database needs its ``-shm`` file: in a folder we cannot write, with no
    ``-wal`` left by a writer, the file holds every committed row and is opened
    ``immutable`` (no ``-shm`` needed); otherwise ``mode=ro`` reads through the
    existing ``-wal`` and ``-shm``.
    """
    if not path.exists() or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return None
    uri = f"{path.as_uri()}?mode=ro"
    if not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    return uri


def _create_private_file(path: str) -> None:
    """Create an empty database file readable by its owner only, whatever the umask.

    SQLite creates the ``-wal`` and ``-shm`` files with the database file's mode,
    so they are private too. An existing file keeps the mode its owner gave it.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise StorageError(f"cannot create the database file {path}: {error.strerror or error}") from None
    try:
        os.fchmod(descriptor, 0o600)  # the umask may have removed owner bits from os.open's mode
    finally:
        os.close(descriptor)


def sqlite_transaction_begin(engine: Engine, read_only: bool) -> str:
    """The statement that begins the engine's transactions (``BEGIN`` / ``BEGIN IMMEDIATE``).

    :class:`StorageError` for a write on a SQLite file opened read-only.
    """
    if read_only:
        return "BEGIN"
    if engine in _READ_ONLY_ENGINES:
        raise StorageError(
            f"the database {engine.url.database} is read-only (this process may not write the file "
            "or its folder): it can be read, not written"
        )
    return "BEGIN IMMEDIATE"


def transaction_begin(engine: Engine, *, read_only: bool, snapshot: bool) -> str | None:
    """The statement beginning a transaction on a driver connection (``DriverTransaction``), or ``None``.

    SQLite: :func:`sqlite_transaction_begin` (its reads always see one snapshot).
    Servers: :data:`SERVER_SNAPSHOT_BEGIN` for a ``snapshot`` read; otherwise none,
    as the driver begins a transaction at READ COMMITTED with the first statement.
    """
    if engine.dialect.name == "sqlite":
        return sqlite_transaction_begin(engine, read_only)
    return SERVER_SNAPSHOT_BEGIN if snapshot else None
