"""SQL of moving a whole database: every table of the models read in key order, written in batches,
the id counters, the target's search index, the bookkeeping of an unfinished transfer, and what
a verification compares.

Generic over ``Base.metadata``: a table another part of the library adds (with its
model and migration) is copied without code here. Only what the database derives
itself is special: :data:`DERIVED_TABLES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

import attrs
from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    inspect,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy import column as column_
from sqlalchemy.engine import Dialect
from sqlalchemy.types import NullType, TypeDecorator

from ..._common.search_query import indexed_words
from ..._driver.errors import wrap_driver_error
from ..models import Base, MessageRow, UsageRow
from .search import WORDS_TABLE, SearchRepository

__all__ = [
    "DERIVED_TABLES",
    "MARKER_TABLE",
    "USAGE_TOTALS",
    "Summary",
    "TablePlan",
    "advance_counters",
    "count_rows",
    "create_marker",
    "drop_marker",
    "finish_search_index",
    "has_rows",
    "high_water_marks",
    "insert_rows",
    "key_from_json",
    "marker_present",
    "python_type",
    "read_marker",
    "replace_rows",
    "stream_rows",
    "summarise",
    "table_plans",
    "write_marker",
]

#: Tables the database keeps itself from another table's rows (migration 0009's triggers
#: fill ``usage_daily`` as ``usage_stats`` rows arrive): copied last, replacing what the
#: triggers computed with the source's own rows, so the sums are the source's to the bit.
DERIVED_TABLES = frozenset({"usage_daily"})

#: The bookkeeping of an unfinished copy or restore in its target: which source, and
#: per table how far it got. Not a model (``alembic check`` ignores tables it does not
#: know); dropped once the transfer is verified.
MARKER_TABLE = "starpod_transfer"
_marker_metadata = MetaData()
_marker = Table(
    MARKER_TABLE,
    _marker_metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    mysql_charset="utf8mb4",
)
_SOURCE = "source"


@attrs.frozen
class TablePlan:
    """How one table moves: its columns (generated ones left out: the target computes them) and key."""

    table: Table
    columns: tuple[Column[Any], ...]
    key: tuple[Column[Any], ...]
    derived: bool

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    @property
    def key_positions(self) -> tuple[int, ...]:
        """Where the key's columns are in a row of :attr:`columns`."""
        names = [column.name for column in self.columns]
        return tuple(names.index(column.name) for column in self.key)


def table_plans() -> list[TablePlan]:
    """Every table of the models, parents before children, derived tables last."""
    plans = []
    for table in Base.metadata.sorted_tables:
        columns = tuple(column for column in table.columns if column.computed is None)
        key = tuple(table.primary_key.columns) or columns
        plans.append(TablePlan(table, columns, key, table.name in DERIVED_TABLES))
    return [plan for plan in plans if not plan.derived] + [plan for plan in plans if plan.derived]


# -- reading ------------------------------------------------------------------------------------


def count_rows(connection: Connection, plan: TablePlan) -> int:
    """How many rows the table holds."""
    count: int = connection.execute(select(func.count()).select_from(plan.table)).scalar_one()
    return count


def has_rows(connection: Connection, plans: Sequence[TablePlan]) -> list[str]:
    """The tables of ``plans`` present in the database that hold at least one row."""
    present = set(inspect(connection).get_table_names())
    return [
        plan.name
        for plan in plans
        if plan.name in present
        and connection.execute(select(literal_column("1")).select_from(plan.table).limit(1)).first()
    ]


def stream_rows(
    connection: Connection, plan: TablePlan, after: tuple[Any, ...] | None, batch: int, *, raw: bool = False
) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order after the key ``after`` (all when ``None``), ``batch`` at a time.

    One streamed statement (a server-side cursor on the servers), so memory holds
    one batch; values as the models' types read them, or with ``raw`` as the driver
    hands them (for a target of the same backend: SQLite's stored text as it is).
    """
    columns, key = (_untyped(plan.columns), _untyped(plan.key)) if raw else (plan.columns, plan.key)
    query = select(*columns).select_from(plan.table).order_by(*key)
    if after is not None:
        query = query.where(_after(key, after))
    result = connection.execution_options(stream_results=True, yield_per=batch).execute(query)
    for partition in result.partitions(batch):
        yield [tuple(row) for row in partition]


def _untyped(columns: tuple[Column[Any], ...]) -> tuple[Any, ...]:
    return tuple(column_(c.name, type_=NullType()) for c in columns)


def _after(key: tuple[Any, ...], values: tuple[Any, ...]) -> Any:
    """``key > values`` in key order, spelt out (row-value comparisons use no index on some servers)."""
    if len(key) == 1:
        return key[0] > values[0]
    clauses = []
    for position in range(len(key)):
        equal = [key[i] == values[i] for i in range(position)]
        clauses.append(and_(*equal, key[position] > values[position]))
    return or_(*clauses) if len(clauses) > 1 else tuple_(*key) > tuple_(*values)


# -- writing ------------------------------------------------------------------------------------


@attrs.frozen
class _Insert:
    sql: str
    processors: tuple[Callable[[Any], Any] | None, ...]


_INSERTS: dict[tuple[str, str, bool], _Insert] = {}


def _insert_for(dialect: Dialect, plan: TablePlan, raw: bool) -> _Insert:
    """The table's INSERT in the driver's own parameter style, and each column's bind conversion (none ``raw``)."""
    cached = _INSERTS.get((dialect.name, plan.name, raw))
    if cached is not None:
        return cached
    quote = dialect.identifier_preparer.quote
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(quote(column.name) for column in plan.columns)
    values = ", ".join(marker for _ in plan.columns)
    insert = _Insert(
        f"INSERT INTO {quote(plan.name)} ({names}) VALUES ({values})",
        tuple(None if raw else column.type.bind_processor(dialect) for column in plan.columns),
    )
    _INSERTS[(dialect.name, plan.name, raw)] = insert
    return insert


def insert_rows(connection: Connection, plan: TablePlan, rows: Sequence[tuple[Any, ...]], *, raw: bool = False) -> None:
    """Insert ``rows`` (values as the models' types read them, ids included; ``raw``: as the driver read them
    from a database of the same backend) in one batch.

    On MariaDB a message's words go into the search index with it (migration 0010);
    SQLite's triggers and PostgreSQL's generated column index messages themselves.
    """
    if not rows:
        return
    dialect = connection.dialect
    insert = _insert_for(dialect, plan, raw)
    processors = [(i, p) for i, p in enumerate(insert.processors) if p is not None]
    if processors:
        converted = []
        for row in rows:
            values = list(row)
            for i, processor in processors:
                values[i] = processor(values[i])
            converted.append(tuple(values))
        parameters: Sequence[tuple[Any, ...]] = converted
    else:
        parameters = rows
    if dialect.name == "postgresql":
        _copy_in(connection, plan, parameters)
    else:
        connection.exec_driver_sql(insert.sql, list(parameters))
    if plan.name == MessageRow.__tablename__ and dialect.name in ("mysql", "mariadb"):
        names = [column.name for column in plan.columns]
        at_id, at_content = names.index("id"), names.index("content")
        words = [(word, row[at_id], hits) for row in rows for word, hits in indexed_words(row[at_content]).items()]
        if words:
            connection.exec_driver_sql(
                f"INSERT INTO {WORDS_TABLE} (word, message_id, hits) VALUES (%s, %s, %s)",
                words,
            )


def _copy_in(connection: Connection, plan: TablePlan, rows: Sequence[tuple[Any, ...]]) -> None:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` (psycopg), several times faster than INSERTs."""
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(column.name) for column in plan.columns)
    statement = f"COPY {quote(plan.name)} ({names}) FROM STDIN"
    driver_connection: Any = connection.connection.dbapi_connection  # a psycopg Connection
    try:
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except connection.dialect.loaded_dbapi.Error as error:
        raise wrap_driver_error(error, connection.dialect, statement=statement) from error


def replace_rows(connection: Connection, plan: TablePlan) -> None:
    """Empty the table (before a derived table gets the source's rows)."""
    connection.execute(delete(plan.table))


# -- id counters --------------------------------------------------------------------------------


def _counted(plans: Sequence[TablePlan]) -> list[TablePlan]:
    return [plan for plan in plans if plan.table.autoincrement_column is not None]


def high_water_marks(connection: Connection, plans: Sequence[TablePlan]) -> dict[str, int]:
    """Per table with an id counter, the largest id it ever handed out (at least its largest id).

    A counter may be past the largest id (the newest rows were deleted): the target
    continues after it, so an id is never handed out twice.
    """
    marks: dict[str, int] = {}
    dialect = connection.dialect.name
    for plan in _counted(plans):
        column = plan.table.autoincrement_column
        assert column is not None
        largest = connection.execute(select(func.max(column))).scalar() or 0
        counter = 0
        if dialect == "sqlite":
            if connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
                counter = (
                    connection.execute(
                        text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": plan.name}
                    ).scalar()
                    or 0
                )
        elif dialect == "postgresql":
            sequence = _pg_sequence(connection, plan.name, column.name)
            if sequence is not None:
                last, called = connection.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
                counter = last if called else last - 1
        else:
            following = connection.execute(
                text(
                    "SELECT AUTO_INCREMENT FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name"
                ),
                {"name": plan.name},
            ).scalar()
            counter = (following or 1) - 1
        marks[plan.name] = max(int(largest), int(counter))
    return marks


def advance_counters(connection: Connection, marks: dict[str, int]) -> None:
    """Move each table's id counter to at least ``marks[table]``, so new rows get ids past the copied ones.

    MariaDB's ``ALTER TABLE`` commits on its own: run this last.
    """
    dialect = connection.dialect.name
    for name, mark in marks.items():
        if dialect == "sqlite":
            current = connection.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :n"), {"n": name}).first()
            if current is None:
                connection.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:n, :s)"), {"n": name, "s": mark}
                )
            elif current[0] < mark:
                connection.execute(text("UPDATE sqlite_sequence SET seq = :s WHERE name = :n"), {"n": name, "s": mark})
        elif dialect == "postgresql":
            sequence = _pg_sequence(connection, name, "id")
            if sequence is not None:
                largest = connection.execute(text(f"SELECT max(id) FROM {name}")).scalar() or 0
                mark = max(mark, int(largest))
                if mark > 0:
                    connection.execute(text(f"SELECT setval('{sequence}', :mark, true)"), {"mark": mark})
        elif mark > 0:
            connection.exec_driver_sql(f"ALTER TABLE {name} AUTO_INCREMENT = {int(mark) + 1}")


def _pg_sequence(connection: Connection, table: str, column: str) -> str | None:
    sequence: str | None = connection.execute(
        text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table, "column": column}
    ).scalar()
    return sequence


# -- the target's search index ---------------------------------------------------------------------


def finish_search_index(connection: Connection) -> None:
    """SQLite: index the messages left waiting for their batch of 32 (migration 0011)."""
    if connection.dialect.name == "sqlite":
        SearchRepository(connection).index_waiting()


# -- the bookkeeping of an unfinished transfer ----------------------------------------------------


def marker_present(connection: Connection) -> bool:
    """Whether the database holds an unfinished transfer's bookkeeping."""
    return MARKER_TABLE in inspect(connection).get_table_names()


def read_marker(connection: Connection) -> dict[str, str]:
    """The bookkeeping: ``source`` (what is being copied) and ``table:NAME`` entries (JSON)."""
    return {row[0]: row[1] for row in connection.execute(select(_marker.c.name, _marker.c.value))}


def create_marker(connection: Connection, source: str) -> None:
    """Start the bookkeeping of a transfer from ``source`` (in the transaction that begins it)."""
    _marker.create(connection, checkfirst=True)
    connection.execute(_marker.insert(), [{"name": _SOURCE, "value": source}])


def write_marker(connection: Connection, table: str, state: dict[str, Any]) -> None:
    """Record how far the table got, in the transaction that wrote its rows."""
    name = f"table:{table}"
    value = json.dumps(state, default=_plain)
    updated = connection.execute(_marker.update().where(_marker.c.name == name).values(value=value)).rowcount
    if not updated:
        connection.execute(_marker.insert(), [{"name": name, "value": value}])


def drop_marker(connection: Connection) -> None:
    """The transfer is verified: its bookkeeping goes."""
    _marker.drop(connection, checkfirst=True)


def _plain(value: object) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot record a key of type {type(value).__name__}")


def key_from_json(plan: TablePlan, values: list[Any], *, raw: bool = False) -> tuple[Any, ...]:
    """A key read back from the bookkeeping, in the key columns' Python types (as stored, ``raw``)."""
    if raw:
        return tuple(values)
    key = []
    for column, value in zip(plan.key, values, strict=True):
        kind = python_type(column)
        if kind is datetime and isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif kind is date and isinstance(value, str):
            value = date.fromisoformat(value)
        key.append(value)
    return tuple(key)


def python_type(column: Column[Any]) -> type | None:
    """The Python type of the column's values, ``None`` when its type does not say.

    A type decorator's own ``python_type`` is ``object``: its ``impl``'s says.
    """
    kind = column.type
    while isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    try:
        found: type = kind.python_type
    except NotImplementedError:
        return None
    return found


# -- what a verification compares -----------------------------------------------------------------


@attrs.frozen
class Summary:
    """What a verification compares of one database (read in one snapshot)."""

    rows: dict[str, int]
    messages_per_session: dict[str, int]
    usage_totals: dict[str, float]
    time_ranges: dict[str, tuple[datetime | None, datetime | None]]


#: The usage columns a verification sums.
USAGE_TOTALS = ("input_tokens", "output_tokens", "cache_read", "cache_write", "cost_usd")


def summarise(connection: Connection, plans: Sequence[TablePlan]) -> Summary:
    """Row counts per table, messages per session, usage totals, and the first and last timestamp
    of each timestamp column (as the models' types read them: to the microsecond)."""
    from ...backends.column_types import UtcTimestamp

    rows = {plan.name: count_rows(connection, plan) for plan in plans}
    messages = MessageRow.__table__
    per_session: dict[str, int] = {
        row[0]: row[1]
        for row in connection.execute(select(messages.c.session_id, func.count()).group_by(messages.c.session_id))
    }
    usage = UsageRow.__table__
    totals_row = connection.execute(select(*(func.coalesce(func.sum(usage.c[name]), 0) for name in USAGE_TOTALS))).one()
    totals = {
        name: (float(value) if name == "cost_usd" else int(value))
        for name, value in zip(USAGE_TOTALS, totals_row, strict=True)
    }
    ranges: dict[str, tuple[datetime | None, datetime | None]] = {}
    for plan in plans:
        for column in plan.columns:
            if isinstance(column.type, UtcTimestamp):
                low, high = connection.execute(select(func.min(column), func.max(column))).one()
                ranges[f"{plan.name}.{column.name}"] = (
                    column.type.process_result_value(low, connection.dialect),
                    column.type.process_result_value(high, connection.dialect),
                )
    return Summary(rows, per_session, totals, ranges)
