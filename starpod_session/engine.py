"""Turning a file path or a SQLAlchemy URL into a configured engine."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, PoolProxiedConnection, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from .errors import InvalidInput

__all__ = [
    "create_storage_engine",
    "to_url",
    "READ_ONLY",
    "SQLITE_SYNCHRONOUS_MODES",
    "MYSQL_MAX_ALLOWED_PACKET",
    "DriverTransaction",
    "sqlite_driver_transaction",
]

#: Execution option marking a transaction that only reads (SQLite then takes no write lock).
READ_ONLY = "starpod_read_only"

SQLITE_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

#: How long a SQLite connection waits for another writer before reporting "busy".
SQLITE_BUSY_TIMEOUT_MS = 5_000

#: The packet size the MariaDB client allows, and the server's ``max_allowed_packet``
#: this library needs: a message of 16 MiB plus its statement must fit in one packet.
MYSQL_MAX_ALLOWED_PACKET = 64 * 1024 * 1024


def to_url(target: str | os.PathLike[str] | URL) -> URL:
    """A SQLAlchemy URL for ``target``: a URL as it is, anything else as a SQLite file path."""
    if isinstance(target, URL):
        return target
    if isinstance(target, str) and "://" in target:
        try:
            return make_url(target)
        except Exception as error:  # sqlalchemy.exc.ArgumentError and friends
            raise InvalidInput("db_path", f"not a valid database URL: {error}") from None
    if not isinstance(target, (str, os.PathLike)):
        raise InvalidInput("db_path", f"expected a path or a URL, got {type(target).__name__}")
    path = Path(target).expanduser()
    if str(target) in ("", ":memory:"):
        raise InvalidInput("db_path", "give a file path: an in-memory database is private to one connection")
    return URL.create("sqlite+pysqlite", database=str(path.resolve()))


def create_storage_engine(url: URL, *, sqlite_synchronous: str = "NORMAL", **engine_options: Any) -> Engine:
    """An engine for ``url`` with the settings this library relies on.

    SQLite: the file's folders are created; every connection runs with
    ``foreign_keys=ON``, WAL, a busy timeout and the given ``synchronous`` level, and
    write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on
    the lock instead of failing half-way. Servers: ``pool_pre_ping`` so a restarted
    server does not hand out dead connections.
    """
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_synchronous, engine_options)
    engine_options.setdefault("pool_pre_ping", True)
    if url.get_backend_name() in ("mysql", "mariadb"):
        url = url.update_query_dict({"charset": "utf8mb4"})
        if url.get_driver_name() == "pymysql":
            engine_options["connect_args"] = {
                "max_allowed_packet": MYSQL_MAX_ALLOWED_PACKET,
                **engine_options.get("connect_args", {}),
            }
    return create_engine(url, **engine_options)


def _sqlite_engine(url: URL, synchronous: str, engine_options: dict[str, Any]) -> Engine:
    synchronous = synchronous.upper()
    if synchronous not in SQLITE_SYNCHRONOUS_MODES:
        raise InvalidInput("sqlite_synchronous", f"expected one of {', '.join(SQLITE_SYNCHRONOUS_MODES)}")
    if not url.database or url.database == ":memory:":
        raise InvalidInput("db_path", "give a file path: an in-memory database is private to one connection")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **engine_options)

    @event.listens_for(engine, "connect")
    def configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of the
        # sqlite3 module, which would start deferred transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin_transaction(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        # On the driver's connection: a Core execution would cost more than the BEGIN itself.
        _sqlite_execute(connection.connection.dbapi_connection, _sqlite_begin(read_only), connection.dialect)

    return engine


def _sqlite_begin(read_only: bool) -> str:
    return "BEGIN" if read_only else "BEGIN IMMEDIATE"


def _sqlite_execute(driver_connection: Any, statement: str, dialect: Any) -> None:
    """Run a statement on a ``sqlite3`` connection, its errors wrapped as SQLAlchemy wraps them."""
    try:
        driver_connection.execute(statement)
    except sqlite3.Error as error:
        raise DBAPIError.instance(statement, (), error, sqlite3.Error, dialect=dialect) from error


class DriverTransaction:
    """A SQLite transaction on a pooled driver connection, with no SQLAlchemy ``Connection`` around it.

    It offers what prepared statements (``repositories._prepared``) use of a
    ``Connection``: ``dialect``, ``connection`` (the pooled connection), ``dispatch``
    (the engine's listeners) and ``invalidate``. Work that runs only prepared
    statements skips the ``Connection`` bookkeeping, which costs more than a
    SQLite primary-key lookup.
    """

    __slots__ = ("dialect", "connection", "dispatch")

    def __init__(self, engine: Engine, pooled: PoolProxiedConnection) -> None:
        self.dialect = engine.dialect
        self.connection = pooled
        self.dispatch = engine.dispatch

    def invalidate(self, error: BaseException | None = None) -> None:
        self.connection.invalidate(error)


@contextmanager
def sqlite_driver_transaction(engine: Engine, *, read_only: bool) -> Iterator[DriverTransaction]:
    """A transaction begun as the engine's own (``BEGIN`` / ``BEGIN IMMEDIATE``), committed if the block succeeds."""
    try:
        pooled = engine.raw_connection()
    except sqlite3.Error as error:
        raise DBAPIError.instance(None, None, error, sqlite3.Error, dialect=engine.dialect) from error
    driver_connection = pooled.dbapi_connection
    try:
        _sqlite_execute(driver_connection, _sqlite_begin(read_only), engine.dialect)
        yield DriverTransaction(engine, pooled)
        _sqlite_execute(driver_connection, "COMMIT", engine.dialect)
    finally:
        try:
            if driver_connection.in_transaction:
                driver_connection.rollback()
        except sqlite3.Error:
            pooled.invalidate()
        finally:
            pooled.close()
