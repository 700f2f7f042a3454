"""Statements of the hot paths, compiled once per dialect and run on the driver's cursor.

SQLAlchemy builds, caches and executes a Core statement in some 40 µs, several
times what SQLite itself needs for a primary-key lookup. The repositories' hot
statements are therefore written once, with named bind parameters, as Core
statements (so they stay portable and typed), compiled once per dialect, and
run directly on the DBAPI connection of the transaction the facade opened,
with the same bind and result processing the column types define
(``records.py`` writes those functions out). Driver errors are wrapped as
SQLAlchemy's ``DBAPIError`` exactly as a Core execution would wrap them
(``errors.py``), so the facade's retry and error mapping see no difference.

A statement runs on any :class:`~.runner.StatementRunner`: a ``Connection``, or
the :class:`~.transaction.DriverTransaction` that prepared work gets while nobody
listens to the engine's events (``events.py``). On a ``Connection`` whose
statements someone listens to, it runs through ``exec_driver_sql`` instead, so
listeners get what SQLAlchemy promises them (a real execution context,
rewrites, ``handle_error``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

from ..errors import StorageError
from .errors import wrap_driver_error
from .events import listened
from .records import Processor, parameters_maker, record_maker, row_maker
from .runner import StatementRunner
from .sqlalchemy_internals import bound_in_order, fetches_lastrowid

__all__ = ["Prepared", "PreparedShapes", "StatementFactory"]

#: What a fetch function makes of the cursor (rows, a count, an id).
Fetched = TypeVar("Fetched")
#: An attrs record class a statement's rows become.
Record = TypeVar("Record")
#: Rows taken from the driver at a time by :meth:`Prepared.records`.
FETCH_CHUNK = 1000
#: Builds a statement for one dialect, where the SQL itself differs between backends.
StatementFactory = Callable[[Dialect], Executable]
#: What tells apart the statements of one query whose SQL depends on its arguments (a hashable value).
Shape = TypeVar("Shape")


class _Compiled:
    """One statement compiled for one dialect."""

    __slots__ = (
        "binds",
        "columns",
        "execute_options",
        "makers",
        "names",
        "parameters",
        "positional",
        "results",
        "returning",
        "row",
        "sql",
    )

    def __init__(
        self, statement: Executable, dialect: Dialect, id_column: ColumnElement[Any] | None, *, replan: bool = False
    ) -> None:
        #: Keyword arguments of the cursor's ``execute``: psycopg's ``prepare=False`` keeps a
        #: ``replan`` statement unprepared (an unnamed statement, planned per run).
        # A driver's name tested outside backends/ (one of five): the fast path lies below the
        # backends (they import it), and this is an argument of psycopg's own cursor.
        self.execute_options: dict[str, Any] = {"prepare": False} if replan and dialect.driver == "psycopg" else {}
        self.returning = id_column is not None and not fetches_lastrowid(dialect)
        if self.returning:
            assert isinstance(statement, Insert) and id_column is not None
            statement = statement.returning(id_column)
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # a statement (not DDL) compiles with the SQL compiler
        self.sql: str = compiled.string
        self.positional: bool = compiled.positional
        bound = bound_in_order(compiled)
        self.names: tuple[str, ...] = tuple(name for _bind, name in bound)
        # Per rendered parameter: the caller's key (None for a literal the statement
        # carries, such as the 1 of ``count + 1``), that literal, and the type's processor.
        self.binds: tuple[tuple[str | None, Any, Processor | None], ...] = tuple(
            (
                bind.key if bind.required else None,
                None if bind.required else bind.effective_value,
                bind.type.dialect_impl(dialect).bind_processor(dialect),
            )
            for bind, _name in bound
        )
        columns = getattr(statement, "selected_columns", ())
        #: (table, column) of each result column, to name a stored value that cannot be read.
        self.columns: tuple[tuple[str, str], ...] = tuple(
            (getattr(getattr(column, "table", None), "name", "?"), getattr(column, "name", "?")) for column in columns
        )
        self.results: tuple[tuple[int, Processor], ...] = tuple(
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        )
        #: Per record class: the function making one record of a result row (see :func:`.records.record_maker`).
        self.makers: dict[type, Callable[[Sequence[Any]], Any]] = {}
        #: The driver's parameters from the caller's values, the binds' processing written out.
        self.parameters: Callable[[dict[str, Any]], Sequence[Any] | dict[str, Any]] = parameters_maker(
            self.binds, self.names if not self.positional else None
        )
        #: A result row with the columns' result processing applied, as a tuple.
        self.row: Callable[[Sequence[Any]], tuple[Any, ...]] = row_maker(dict(self.results), len(columns))

    def maker(self, record: type[Record]) -> Callable[[Sequence[Any]], Record]:
        made = self.makers.get(record)
        if made is None:
            made = self.makers.setdefault(record, record_maker(record, dict(self.results)))
        return made


class Prepared:
    """A Core statement with named ``bindparam``s, run on the current transaction's DBAPI cursor.

    ``statement`` is the statement, or a :data:`StatementFactory` building it per
    dialect. ``id_column``: for an INSERT, the generated key to hand back from
    :meth:`insert` (read from ``lastrowid``, or with ``RETURNING`` where the driver
    has no such thing). ``stream``: the statement may return many rows (a
    transcript); :meth:`records` then reads them off the server as it goes
    (pymysql's unbuffered cursor) instead of into one list first. ``replan``:
    PostgreSQL plans the statement for its values on every run instead of keeping
    one generic plan once psycopg prepares it (on its fifth run): for a look-up
    that several indexes could serve, a generic plan made while the table was
    small and never ANALYZEd can stick to the wrong one as the table grows.
    """

    def __init__(
        self,
        statement: Executable | StatementFactory,
        *,
        id_column: ColumnElement[Any] | None = None,
        stream: bool = False,
        replan: bool = False,
    ) -> None:
        self._statement = statement
        self._id_column = id_column
        self._stream = stream
        self._replan = replan
        self._by_dialect: dict[Dialect, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect)
        if compiled is None:
            with self._lock:
                statement = self._statement if isinstance(self._statement, Executable) else self._statement(dialect)
                compiled = self._by_dialect.setdefault(
                    dialect, _Compiled(statement, dialect, self._id_column, replan=self._replan)
                )
        return compiled

    def _run(
        self,
        connection: StatementRunner,
        values: dict[str, Any] | list[dict[str, Any]],
        fetch: Callable[[Any, _Compiled], Fetched],
        *,
        unbuffered: bool = False,
    ) -> Fetched:
        dialect = connection.dialect
        compiled = self._by_dialect.get(dialect)
        if compiled is None:
            compiled = self._compiled(dialect)
        many = isinstance(values, list)
        parameters: Any = (
            [compiled.parameters(row) for row in values] if many else compiled.parameters(values)  # type: ignore[arg-type]
        )
        if isinstance(connection, Connection) and listened(connection):
            return _run_observed(connection, compiled, parameters, fetch, many, unbuffered)
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        # A driver's name tested outside backends/ (one of five): the fast path lies below the
        # backends, and which cursor streams is the driver's own API.
        if unbuffered and dialect.driver == "pymysql":
            # pymysql's default cursor reads every row into a list before the first fetch;
            # SSCursor reads them off the socket as they are fetched.
            cursor = dbapi_connection.cursor(dialect.loaded_dbapi.cursors.SSCursor)
        else:  # sqlite3 steps the statement per fetch; psycopg keeps the result in C until fetched
            cursor = dbapi_connection.cursor()
        try:
            # Nobody listens to this statement (``_driver.events``): no event to fire.
            if many:
                cursor.executemany(compiled.sql, parameters)
            else:
                cursor.execute(compiled.sql, parameters, **compiled.execute_options)
            return fetch(cursor, compiled)
        except dialect.loaded_dbapi.Error as error:
            wrapped = wrap_driver_error(
                error,
                dialect,
                statement=compiled.sql,
                parameters=parameters,
                driver_connection=dbapi_connection,
                cursor=cursor,
            )
            if wrapped.connection_invalidated:
                connection.invalidate(error)
            raise wrapped from error
        finally:
            cursor.close()

    def rows(self, connection: StatementRunner, **values: Any) -> list[Any]:
        """Every result row, as tuples with the column types' result processing applied."""
        return self._run(connection, values, _fetch_all)

    def first(self, connection: StatementRunner, **values: Any) -> tuple[Any, ...] | None:
        """The first result row (processed), or ``None``."""
        return self._run(connection, values, _fetch_first)

    def records(self, connection: StatementRunner, record: type[Record], **values: Any) -> list[Record]:
        """Every result row as a ``record`` (an attrs class whose fields are the selected columns, in order).

        The driver's rows are taken :data:`FETCH_CHUNK` at a time: only a chunk of
        them is alive beside the records, never all of them.
        """
        return self._run(
            connection,
            values,
            lambda cursor, compiled: _fetch_records(cursor, compiled, record),
            unbuffered=self._stream,
        )

    def record(self, connection: StatementRunner, record: type[Record], **values: Any) -> Record | None:
        """The first result row as a ``record`` (see :meth:`records`), or ``None``."""
        return self._run(connection, values, lambda cursor, compiled: _fetch_record(cursor, compiled, record))

    def scalar(self, connection: StatementRunner, **values: Any) -> Any:
        """The first column of the first row, of a statement that always returns a row (``SELECT EXISTS``)."""
        return self._run(connection, values, _fetch_scalar)

    def rowcount(self, connection: StatementRunner, **values: Any) -> int:
        """How many rows an UPDATE or DELETE matched."""
        return self._run(connection, values, _rowcount)

    def insert(self, connection: StatementRunner, **values: Any) -> int:
        """Run an INSERT and return the generated ``id_column`` value."""
        return self._run(connection, values, _inserted_id)

    def execute_many(self, connection: StatementRunner, rows: list[dict[str, Any]]) -> None:
        """Run the statement once per row of values, in one round trip where the driver can (an INSERT's rows)."""
        self._run(connection, rows, _nothing)

    def insert_or_none(self, connection: StatementRunner, **values: Any) -> int | None:
        """Run an ``insert_unless_duplicate`` INSERT (``backends``): the new row's id, ``None`` if it stored nothing.

        (On MariaDB a skipped insert may answer with the existing row's id instead.)
        """
        return self._run(connection, values, _inserted_id_or_none)


def _run_observed(
    connection: Connection,
    compiled: _Compiled,
    parameters: Any,
    fetch: Callable[[Any, _Compiled], Fetched],
    many: bool,
    unbuffered: bool,
) -> Fetched:
    """Run a compiled statement through ``Connection.exec_driver_sql``, for its listeners.

    SQLAlchemy then fires every statement event with the ``Connection`` and a real
    execution context, runs a statement a listener rewrote (``retval=True``), calls
    ``handle_error`` and wraps a driver error itself. The rows stay the driver's
    (``exec_driver_sql`` applies no result processing): ``fetch`` reads them off the
    result as it would off a cursor, and applies the column types' processing.
    """
    if compiled.positional:  # exec_driver_sql takes one positional set as a tuple, many as a list of them
        parameters = list(map(tuple, parameters)) if many else tuple(parameters)
    # A driver's name tested outside backends/ (one of five): as in ``_run`` (pymysql's cursor).
    options = {"stream_results": True} if unbuffered and connection.dialect.driver == "pymysql" else {}
    # A ``replan`` statement stays unprepared here too: exec_driver_sql takes no ``prepare=False``,
    # so psycopg's automatic preparation is off on the connection while it runs.
    unprepared = connection.connection.dbapi_connection if compiled.execute_options.get("prepare") is False else None
    threshold = getattr(unprepared, "prepare_threshold", None)
    if unprepared is not None:
        unprepared.prepare_threshold = None
    try:
        result = connection.exec_driver_sql(compiled.sql, parameters, execution_options=options)
    finally:
        if unprepared is not None:
            unprepared.prepare_threshold = threshold
    try:
        return fetch(result, compiled)
    finally:
        result.close()


class PreparedShapes(Generic[Shape]):
    """One :class:`Prepared` statement per shape of a query whose SQL depends on its
    arguments (which filters are given, how many words), built by ``build(shape,
    dialect)`` and compiled on first use, its values bound as parameters.

    The shapes are few; should they ever number ``limit``, the cache starts afresh.
    """

    def __init__(self, build: Callable[[Shape, Dialect], Executable], *, limit: int = 512) -> None:
        self._build = build
        self._limit = limit
        self._statements: dict[Shape, Prepared] = {}
        self._lock = threading.Lock()

    def __getitem__(self, shape: Shape) -> Prepared:
        """The prepared statement of ``shape``."""
        prepared = self._statements.get(shape)
        if prepared is None:
            with self._lock:
                if len(self._statements) >= self._limit:
                    self._statements.clear()
                build = self._build
                prepared = self._statements.setdefault(shape, Prepared(lambda dialect: build(shape, dialect)))
        return prepared


def _process(row: Sequence[Any], compiled: _Compiled) -> tuple[Any, ...]:
    values = list(row)
    for index, processor in compiled.results:
        try:
            values[index] = processor(values[index])
        except ValueError as error:  # e.g. a timestamp another program stored in its own format
            raise _unreadable(row, compiled, index, error) from error
    return tuple(values)


def _unreadable(row: Sequence[Any], compiled: _Compiled, index: int, error: ValueError) -> StorageError:
    """The error for a stored value the column type cannot read, naming table, row id and value."""
    table, column = compiled.columns[index]
    ids = [row[i] for i, (t, name) in enumerate(compiled.columns) if t == table and name == "id"]
    where = f"row id {ids[0]!r}" if ids else "a row"
    return StorageError(f"{table}.{column} of {where} holds {row[index]!r}, which cannot be read: {error}")


def _fetch_all(cursor: Any, compiled: _Compiled) -> list[Any]:
    rows = cursor.fetchall()
    try:
        return list(map(compiled.row, rows))
    except ValueError:
        for row in rows:
            _process(row, compiled)  # raises the error that names the unreadable value
        raise


def _fetch_records(cursor: Any, compiled: _Compiled, record: type[Record]) -> list[Record]:
    # A chunk of driver rows at a time: never all of them alive beside the records.
    make = compiled.maker(record)
    made: list[Record] = []
    while chunk := cursor.fetchmany(FETCH_CHUNK):
        try:
            made += map(make, chunk)
        except ValueError:
            for row in chunk:
                _process(row, compiled)  # raises the error that names the unreadable value
            raise
    return made


def _fetch_record(cursor: Any, compiled: _Compiled, record: type[Record]) -> Record | None:
    row = cursor.fetchone()
    if row is None:
        return None
    try:
        return compiled.maker(record)(row)
    except ValueError:
        _process(row, compiled)  # raises the error that names the unreadable value
        raise


def _fetch_first(cursor: Any, compiled: _Compiled) -> tuple[Any, ...] | None:
    row = cursor.fetchone()
    if row is None:
        return None
    try:
        return compiled.row(row)
    except ValueError:
        _process(row, compiled)  # raises the error that names the unreadable value
        raise


def _fetch_scalar(cursor: Any, compiled: _Compiled) -> Any:
    row = _fetch_first(cursor, compiled)
    assert row is not None, "the statement always returns a row"
    return row[0]


def _nothing(_cursor: Any, _compiled: _Compiled) -> None:
    return None


def _rowcount(cursor: Any, _compiled: _Compiled) -> int:
    count: int = cursor.rowcount
    return count


def _inserted_id(cursor: Any, compiled: _Compiled) -> int:
    inserted: int = cursor.fetchone()[0] if compiled.returning else cursor.lastrowid
    return inserted


def _inserted_id_or_none(cursor: Any, compiled: _Compiled) -> int | None:
    if compiled.returning:
        row = cursor.fetchone()
        returned: int | None = None if row is None else row[0]
        return returned
    # sqlite3 keeps the previous insert's lastrowid when this one stored nothing.
    inserted: int | None = cursor.lastrowid if cursor.rowcount > 0 else None
    return inserted
