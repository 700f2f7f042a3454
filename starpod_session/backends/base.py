"""The protocol every backend module implements, and what the three share.

A backend is one object per database kind (:data:`~.sqlite.SQLITE`,
:data:`~.postgresql.POSTGRESQL`, :data:`~.mariadb.MARIADB`); :func:`~starpod_session.backends.backend_of`
finds the one of a URL or a dialect. Everything the library does differently on
one kind of database is a member of this protocol, so the rest of the package
asks its backend rather than testing the database's name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
from sqlalchemy import Date
from sqlalchemy.sql.functions import FunctionElement

from .._common.urls import redact_url

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Column, Connection, Engine, Insert, Select, Table
    from sqlalchemy.engine import URL, Dialect
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.sql import ColumnElement, FromClause
    from sqlalchemy.sql.elements import BindParameter
    from sqlalchemy.sql.expression import Executable

    from .._common.search_query import QueryPart

__all__ = [
    "Backend",
    "BackendDefaults",
    "EngineSettings",
    "Match",
    "PackedKind",
    "Rows",
    "WordKinds",
    "milliseconds",
    "utc_day",
]


@attrs.frozen
class EngineSettings:
    """What ``SessionManager`` asks of an engine, checked by ``create_storage_engine``."""

    lock_timeout: float
    sqlite_synchronous: str
    sqlite_cache_mib: int


#: A full-text match: (conditions, score, FROM clause, message id); the query bound as ``fts_query``
#: or, on MariaDB, as its words (``word_I_J``, ``verify_I``).
Match = tuple["list[ColumnElement[Any]]", "ColumnElement[Any]", "FromClause", "ColumnElement[Any]"]
#: Rows of a table as the driver takes them, in a statement's column order.
Rows = Sequence[tuple[Any, ...]]
#: Per indexed part of a query, on MariaDB: (how many words, a prefix, the content must confirm it); ``()`` elsewhere.
WordKinds = tuple[tuple[int, bool, bool], ...]
#: How :meth:`Backend.packed_rows` writes a value: a JSON string, JSON text as stored, a JSON number.
PackedKind = Literal["text", "json", "number"]


class Backend(Protocol):
    """What differs between SQLite, PostgreSQL and MariaDB (one implementation in each module here)."""

    #: ``sqlite``, ``postgresql`` or ``mariadb`` (also for a MySQL server behind ``mysql+pymysql://``).
    name: str
    #: Whether stored messages wait for the search index's next batch (SQLite, migration 0011): a
    #: manager that may write indexes them before it searches, one that may not searches a copy.
    indexes_in_batches: bool
    #: Whether ``TransactionRunner`` keeps connections checked out between calls (SQLite: a
    #: checkout and check-in cost as much as a small transaction there).
    holds_connections: bool

    def shown(self, url: URL) -> str:
        """How messages name the database: the file path, or the URL with every password hidden."""

    def local_file(self, url: URL) -> str | None:
        """The database file ``url`` names (``""`` if none), or ``None`` for a server."""

    def create_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        """The engine for ``url``: its connect settings and listeners (``engine_options`` hold the pool's)."""

    def transaction_begin(self, engine: Engine, *, read_only: bool, snapshot: bool) -> str | None:
        """The statement beginning a transaction on a driver connection, or ``None`` (the driver begins one)."""

    def is_read_only(self, engine: Engine) -> bool:
        """Whether ``engine`` was opened read-only (a SQLite file this process may not write)."""

    def system_name(self, dialect: Dialect) -> str:
        """OpenTelemetry's ``db.system.name`` of a connected engine's dialect."""

    # -- storage: statements and reports --------------------------------------------------

    #: Whether an INSERT that conflicts fails (an ``IntegrityError`` the caller catches) rather than
    #: skipping the row, for want of an ``ON CONFLICT DO NOTHING`` on one index (MariaDB).
    conflict_raises: bool
    #: Whether the repository writes each message's words into ``session_message_words`` as it stores
    #: the message (MariaDB: a trigger cannot split text at any useful speed); elsewhere the index is
    #: kept by the database.
    indexes_words: bool
    #: Whether the cost overview reads its grouped rows through a CTE read more than once (SQLite and
    #: PostgreSQL compute one once) rather than fanning them out (MariaDB computes it at each reference).
    shares_report_groups: bool

    def insert_unless_duplicate(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]], id_column: Column[Any]
    ) -> Executable:
        """``backends.insert_unless_duplicate``'s statement on this backend."""

    def insert_skipping_conflict(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]]
    ) -> Executable:
        """An INSERT that skips a row conflicting on ``unique``, or fails where :attr:`conflict_raises`."""

    #: Whether a statement's ``WITH`` may hold INSERTs and UPDATEs (PostgreSQL's data-modifying CTEs):
    #: rows that depend on one guarded UPDATE are then written in one round trip (an ADK append).
    writes_in_ctes: bool

    def insert_selected_skipping_conflict(
        self, table: Table, names: Sequence[str], rows: Select[Any], unique: Sequence[Column[Any]]
    ) -> Insert:
        """``INSERT ... SELECT`` of ``rows`` into ``names`` skipping rows conflicting on ``unique``
        (where :attr:`writes_in_ctes`, to be one of those CTEs)."""

    def statement_alone(self, driver_connection: Any) -> AbstractContextManager[None]:
        """Around the first statement of a transaction that is all the transaction writes: makes it a
        transaction of its own where that saves round trips (PostgreSQL); elsewhere, or once the
        transaction has begun, nothing changes."""

    def is_integer_overflow(self, error: DBAPIError) -> bool:
        """Whether a report failed because a sum passed 2**63-1 (SQLite; the servers sum exactly)."""

    def is_disk_full(self, error: BaseException) -> bool:
        """Whether ``error``, a driver's error, says the disk under the database (or its size limit) is full."""

    def in_code_points(self, name: ColumnElement[Any]) -> ColumnElement[Any]:
        """``name`` ordered by code point whatever the database's locale."""

    #: Whether a read of many short rows is faster as one value the server packs them into
    #: (:meth:`packed_rows`) than row by row: MariaDB, where PyMySQL spends some 5 µs of Python
    #: on each row it reads, several times what parsing the packed JSON costs.
    packs_rows: bool

    def packed_rows(
        self, values: Sequence[tuple[ColumnElement[Any], PackedKind]], order_by: Sequence[ColumnElement[Any]]
    ) -> ColumnElement[str]:
        """The aggregate of a statement's rows as one JSON array of arrays in ``order_by`` order (where
        :attr:`packs_rows`), each array the row's ``values``: ``"text"`` as JSON strings, ``"json"``
        (columns holding JSON text) as they are, ``"number"`` as JSON numbers reading back exactly."""

    # -- search ------------------------------------------------------------------------------

    def word_kinds(self, indexed: tuple[QueryPart, ...]) -> WordKinds:
        """What the SQL of a search depends on in its indexed parts beyond their number (MariaDB's words)."""

    def match_values(self, indexed: tuple[QueryPart, ...], kinds: WordKinds) -> dict[str, str]:
        """The bound values of :meth:`match` for a query's indexed parts (the engine's query syntax)."""

    def match(self, messages: Table, kinds: WordKinds, needs_row: bool, *, waiting: bool = False) -> Match:
        """The index's match of the indexed parts; ``needs_row``: other conditions read the message row.

        ``waiting`` (SQLite): match the reader's copy of the messages waiting for the index
        (``WAITING_FTS``, in its connection's TEMP schema) instead of the index.
        """

    def contains(self, lowered: ColumnElement[Any], part: BindParameter[str]) -> ColumnElement[Any]:
        """Whether the lower-cased content holds ``part`` (a substring no index answers)."""

    def purge_deleted_entries(self, connection: Connection) -> None:
        """Make erased words leave the index's storage, not only its answers (SQLite; the servers' indexes
        drop deleted rows themselves)."""

    # -- schema ----------------------------------------------------------------------------

    def lock_schema(self, connection: Connection) -> None:
        """Hold off every other process's schema upgrade until :meth:`unlock_schema` (or the commit)."""

    def schema_upgraded(self, connection: Connection) -> None:
        """After a successful upgrade, before :meth:`unlock_schema`: make the stamp durable if the lock outlives
        the transaction."""

    def unlock_schema(self, connection: Connection) -> None:
        """Let the next process upgrade (also after a failed upgrade)."""

    # -- moving a whole database (features/transfer.py, storage/repositories/transfer.py) --------------

    #: Driver errors that reach the caller unwrapped by SQLAlchemy (raised on the driver connection by
    #: a listener, as :meth:`read_only_engine`'s ``BEGIN`` on SQLite): ``sqlite3.Error``; none on the
    #: servers (their drivers are imported only when used).
    unwrapped_errors: tuple[type[Exception], ...]

    def read_only_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        """An engine that can only read ``url``'s database, each transaction run with the ``SNAPSHOT`` option
        seeing one snapshot (the source of a copy or a dump, never written)."""

    def copy_file(self, url: URL, copy: Path) -> URL:
        """Copy the database file ``url`` names, read through a read-only connection, to ``copy``; the copy's URL.

        SQLite's backup API (a consistent copy while other processes write); :class:`StorageError` when the
        file cannot be read. A server has no file: never called there.
        """

    def load_rows(
        self, connection: Connection, table: Table, columns: Sequence[Column[Any]], rows: Rows, statement: str
    ) -> None:
        """Insert ``rows`` (the driver's values of ``columns``) into ``table`` the fastest way the database takes
        them: ``statement`` (an INSERT of one row in the driver's parameter style) for each row, which the
        driver may send as multi-row INSERTs (MariaDB), or PostgreSQL's ``COPY ... FROM STDIN``."""

    def id_counter(self, connection: Connection, table: str, column: str) -> int:
        """The largest id ``table``'s counter of ``column`` handed out (0 if none yet); it may be past the
        largest id in the table (the newest rows were deleted)."""

    def advance_id_counter(self, connection: Connection, table: str, column: str, mark: int) -> None:
        """Move ``table``'s counter of ``column`` to at least ``mark`` (and its largest id), so new rows get ids
        past the copied ones. MariaDB's ``ALTER TABLE`` commits on its own."""


class BackendDefaults:
    """What most backends do, for them to inherit: each backend module overrides where it differs."""

    name: str

    def shown(self, url: URL) -> str:
        return redact_url(url)

    def local_file(self, url: URL) -> str | None:
        return None

    def is_read_only(self, engine: Engine) -> bool:
        return False

    def system_name(self, dialect: Dialect) -> str:
        return self.name

    def insert_unless_duplicate(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]], id_column: Column[Any]
    ) -> Executable:
        return self.insert_skipping_conflict(table, values, unique)

    def insert_skipping_conflict(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]]
    ) -> Executable:
        raise NotImplementedError

    writes_in_ctes = False

    def insert_selected_skipping_conflict(
        self, table: Table, names: Sequence[str], rows: Select[Any], unique: Sequence[Column[Any]]
    ) -> Insert:
        raise NotImplementedError

    def statement_alone(self, driver_connection: Any) -> AbstractContextManager[None]:
        return nullcontext()

    def is_integer_overflow(self, error: DBAPIError) -> bool:
        return False

    def is_disk_full(self, error: BaseException) -> bool:
        return False

    def in_code_points(self, name: ColumnElement[Any]) -> ColumnElement[Any]:
        return name

    packs_rows = False

    def packed_rows(
        self, values: Sequence[tuple[ColumnElement[Any], PackedKind]], order_by: Sequence[ColumnElement[Any]]
    ) -> ColumnElement[str]:
        raise NotImplementedError

    def word_kinds(self, indexed: tuple[QueryPart, ...]) -> WordKinds:
        return ()

    def purge_deleted_entries(self, connection: Connection) -> None:
        pass

    def schema_upgraded(self, connection: Connection) -> None:
        pass

    def unlock_schema(self, connection: Connection) -> None:
        pass

    unwrapped_errors: tuple[type[Exception], ...] = ()

    def copy_file(self, url: URL, copy: Path) -> URL:
        raise NotImplementedError(f"{self.name} keeps no database file to copy")

    def load_rows(
        self, connection: Connection, table: Table, columns: Sequence[Column[Any]], rows: Rows, statement: str
    ) -> None:
        connection.exec_driver_sql(statement, list(rows))


def milliseconds(seconds: float) -> int:
    """A positive whole number of milliseconds (0 would mean "wait for ever" to SQLite and PostgreSQL)."""
    return max(1, math.ceil(seconds * 1000))


class utc_day(FunctionElement[Any]):
    """The UTC calendar day of a timestamp column, computed by the database (each backend compiles it)."""

    type = Date()
    inherit_cache = True
