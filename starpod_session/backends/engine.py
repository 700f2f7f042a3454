"""Turning a file path or a SQLAlchemy URL into a checked ``Database`` and a configured engine (its backend's)."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import attrs
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError

from .._common.urls import redact_text, redact_url
from ..errors import InvalidInput, StarpodSessionError
from . import backend_of, backend_of_url, deadlines
from ._server import SNAPSHOT
from .base import EngineSettings
from .mariadb import MYSQL_MAX_ALLOWED_PACKET
from .sqlite import READ_ONLY

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
    "Database",
    "check_pool_size",
    "check_sqlite_cache_mib",
    "create_storage_engine",
    "to_database",
    "to_url",
    "transaction_begin",
]


#: Seconds a statement waits for a lock held by another transaction before the
#: database reports it (SQLite ``busy_timeout``, PostgreSQL ``lock_timeout``,
#: MariaDB ``innodb_lock_wait_timeout``); also the budget of a call's retries.
DEFAULT_LOCK_TIMEOUT = 30.0

#: How many connections a manager's pool holds at most (opened as threads need them, then kept):
#: as many as the default ``ThreadPoolExecutor`` (and so ``asyncio.to_thread``) runs threads.
DEFAULT_POOL_SIZE = 32

#: How many MiB of a SQLite file's pages each connection keeps in memory (``PRAGMA cache_size``).
#: SQLite's own default, 2 MiB, holds too few of a large file's index pages: past it
#: every page a look-up's B-tree walk reads again is a system call and a copy, most
#: of what the look-up grows by from a thousand rows to a million.
DEFAULT_SQLITE_CACHE_MIB = 8

#: The largest ``sqlite_cache_mib`` taken (64 GiB per connection).
MAX_SQLITE_CACHE_MIB = 1 << 16

#: The largest ``pool_size`` taken: beyond it a server runs out of connections long before.
MAX_POOL_SIZE = 1000

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
    database = Database(url, backend_of_url(url).shown(url))
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


def create_storage_engine(
    url: URL,
    *,
    sqlite_synchronous: str = "NORMAL",
    sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    pool_size: int = DEFAULT_POOL_SIZE,
    connect_timeout: float = deadlines.DEFAULT_CONNECT_TIMEOUT,
    statement_timeout: float | None = deadlines.DEFAULT_STATEMENT_TIMEOUT,
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

    Servers: a connection attempt gives up after ``connect_timeout`` seconds (per
    host of a multi-host URL), and a connection held longer than
    ``statement_timeout`` seconds (at least ``lock_timeout`` plus one) by one
    attempt of a call is cut (``backends/deadlines.py``): a hung server costs a bounded
    wait. ``statement_timeout=None``: no such deadline (migrations, bulk work).

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
    settings = EngineSettings(lock_timeout, sqlite_synchronous, sqlite_cache_mib)
    bounds = deadlines.connect_arguments(url.get_backend_name(), connect_timeout)
    if bounds:  # servers: the driver's own connect timeout, unless the caller gave one
        engine_options["connect_args"] = {**bounds, **engine_options.get("connect_args", {})}
    # Each backend calls sqlalchemy.create_engine looked up on the module at each call, not an
    # imported name: tracing (OpenTelemetry's SQLAlchemy instrumentation) wraps it, often after
    # this package was imported.
    backend = backend_of_url(url)
    engine = backend.create_engine(url, settings, engine_options)
    if statement_timeout is not None and not backend.holds_connections:
        # Connections that go back to the pool after each call: each checkout gets a deadline.
        deadlines.watch(engine, max(statement_timeout, lock_timeout + 1))
    return engine


def transaction_begin(engine: Engine, *, read_only: bool, snapshot: bool) -> str | None:
    """The statement beginning a transaction on a driver connection (``DriverTransaction``), or ``None``.

    SQLite: ``BEGIN`` for a read (its reads always see one snapshot), ``BEGIN IMMEDIATE``
    for a write (:class:`StorageError` on a file opened read-only). Servers:
    ``SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`` for a ``snapshot`` read; otherwise
    none, as the driver begins a transaction at READ COMMITTED with the first statement.
    """
    return backend_of(engine.dialect).transaction_begin(engine, read_only=read_only, snapshot=snapshot)
