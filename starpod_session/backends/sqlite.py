"""SQLite: a file, its pragmas, ``BEGIN IMMEDIATE``, read-only files, held connections, batched search indexing."""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import sqlalchemy
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Table,
    column,
    event,
    func,
    literal_column,
    table,
    text,
)
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable

from .._common.folders import ensure_folder
from .._common.search_query import QueryPart
from .._driver.events import listen_as_own
from .._driver.transaction import driver_execute
from ..errors import InvalidInput, StorageError
from .base import BackendDefaults, EngineSettings, Match, WordKinds, milliseconds, utc_day

__all__ = ["FTS_TABLE", "READ_ONLY", "SQLITE", "SQLITE_SYNCHRONOUS_MODES", "WAITING_FTS", "SQLite", "fts5"]

#: Execution option marking a transaction that only reads (SQLite then takes no write lock).
READ_ONLY = "starpod_read_only"

SQLITE_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

#: The FTS5 table of the messages' words (migration 0008), outside the models: the other backends have none.
FTS_TABLE = "session_messages_fts"
#: A reader's copy of the messages waiting for the index, in its connection's TEMP schema
#: (``storage/repositories/_waiting.py``).
WAITING_FTS = "starpod_waiting_fts"
#: The FTS5 tables by whether they hold the waiting messages.
_FTS_TABLES = {False: table(FTS_TABLE, column("rowid")), True: table(WAITING_FTS, column("rowid"))}

#: SQLite engines opened read-only (a write transaction on one is refused: :meth:`SQLite.transaction_begin`).
_READ_ONLY_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


class SQLite(BackendDefaults):
    """SQLite through Python's ``sqlite3`` (see :class:`~.base.Backend`)."""

    name = "sqlite"
    holds_connections = True
    indexes_in_batches = True
    conflict_raises = False
    indexes_words = False
    shares_report_groups = True
    unwrapped_errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def shown(self, url: URL) -> str:
        return str(url.database)

    def local_file(self, url: URL) -> str | None:
        return url.database or ""

    def create_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        synchronous = settings.sqlite_synchronous.upper()
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
        # sqlalchemy.create_engine, looked up at each call: see engine.create_storage_engine.
        engine = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False}, **engine_options)
        if read_only_uri is not None:
            _READ_ONLY_ENGINES.add(engine)
        busy_timeout = milliseconds(settings.lock_timeout)
        cache_mib = settings.sqlite_cache_mib

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
            driver_execute(connection.connection.dbapi_connection, self._begin(engine, read_only), connection.dialect)

        return engine

    def transaction_begin(self, engine: Engine, *, read_only: bool, snapshot: bool) -> str | None:
        return self._begin(engine, read_only)

    def _begin(self, engine: Engine, read_only: bool) -> str:
        """``BEGIN`` for a read (its reads always see one snapshot), ``BEGIN IMMEDIATE`` for a write.

        :class:`StorageError` for a write on a file opened read-only.
        """
        if read_only:
            return "BEGIN"
        if engine in _READ_ONLY_ENGINES:
            raise StorageError(
                f"the database {engine.url.database} is read-only (this process may not write the file "
                "or its folder): it can be read, not written"
            )
        return "BEGIN IMMEDIATE"

    def is_read_only(self, engine: Engine) -> bool:
        return engine in _READ_ONLY_ENGINES

    def insert_skipping_conflict(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]]
    ) -> Executable:
        return sqlite_dialect.insert(table).values(values).on_conflict_do_nothing(index_elements=unique)

    def is_integer_overflow(self, error: DBAPIError) -> bool:
        return "integer overflow" in str(error.orig)

    def is_disk_full(self, error: BaseException) -> bool:
        # SQLITE_FULL: the disk, or the file's max_page_count.
        return isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL

    def match_values(self, indexed: tuple[QueryPart, ...], kinds: WordKinds) -> dict[str, str]:
        return {"fts_query": fts5(indexed)}

    def match(self, messages: Table, kinds: WordKinds, needs_row: bool, *, waiting: bool = False) -> Match:
        fts = _FTS_TABLES[waiting]
        # bm25() is lower for better matches; negated so every backend ranks high first.
        score: ColumnElement[Any] = -literal_column(f"bm25({fts.name})", Float)
        source = fts.join(messages, messages.c.id == fts.c.rowid) if needs_row else fts
        condition = text(f"{fts.name} MATCH :fts_query")
        # A WHERE condition of raw SQL: SQLAlchemy accepts it, its stubs want a ColumnElement.
        return [condition], score, source, fts.c.rowid  # type: ignore[list-item]

    def contains(self, lowered: ColumnElement[Any], part: BindParameter[str]) -> ColumnElement[Any]:
        return func.instr(lowered, part) > 0

    def purge_deleted_entries(self, connection: Connection) -> None:
        # FTS5 records a deletion as a marker beside the old entry until segments
        # merge; ``optimize`` merges them all now, so the shadow tables no longer
        # hold the deleted messages' words. (Costly on a large index: erasure only.)
        connection.execute(text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')"))

    def lock_schema(self, connection: Connection) -> None:
        # Engines from create_storage_engine began with BEGIN IMMEDIATE, which
        # excludes every other writer until commit; any other engine has not
        # started a transaction yet, so take the write lock here.
        if not cast(sqlite3.Connection, connection.connection.dbapi_connection).in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def read_only_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        # mode=ro and query_only; none of a writer's pragmas (WAL, synchronous), nor its pool:
        # one connection per thread, each transaction a BEGIN (whose reads see one snapshot).
        uri = f"file:{quote(str(Path(str(url.database))))}?mode=ro"
        engine = sqlalchemy.create_engine(
            "sqlite+pysqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
        )

        @event.listens_for(engine, "connect")
        def read_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA query_only = ON")

        @event.listens_for(engine, "begin")
        def begin(connection: Connection) -> None:
            connection.connection.dbapi_connection.execute("BEGIN")  # type: ignore[union-attr]

        return engine

    def copy_file(self, url: URL, copy: Path) -> URL:
        path = Path(str(url.database))
        try:
            with (
                closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as original,
                closing(sqlite3.connect(copy)) as duplicate,
            ):
                original.backup(duplicate)
        except sqlite3.Error as error:
            raise StorageError(f"{self.shown(url)}: cannot read the file: {error}") from error
        return URL.create(url.drivername, database=str(copy))

    # load_rows: the INSERT for each row (sqlite3's executemany; its triggers index the messages).

    def id_counter(self, connection: Connection, table: str, column: str) -> int:
        if not connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            return 0
        counter = connection.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": table})
        return int(counter.scalar() or 0)

    def advance_id_counter(self, connection: Connection, table: str, column: str, mark: int) -> None:
        current = connection.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :n"), {"n": table}).first()
        if current is None:
            connection.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:n, :s)"), {"n": table, "s": mark})
        elif current[0] < mark:
            connection.execute(text("UPDATE sqlite_sequence SET seq = :s WHERE name = :n"), {"n": table, "s": mark})


@compiles(utc_day, "sqlite")
def _utc_day(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # RFC 3339 text in UTC: the first ten characters are the day.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


# The words are letters and digits only (``parse_query``), so none can hold a quote;
# quoting each one still keeps any word from being read as an operator (NEAR, AND, OR).


def fts5(parts: tuple[QueryPart, ...]) -> str:
    """FTS5: ``"word" AND "pre"* AND "two words"``."""
    return " AND ".join(f'"{part.text}"' + ("*" if part.prefix else "") for part in parts)


#: The SQLite backend.
SQLITE = SQLite()


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
