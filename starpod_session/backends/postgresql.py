"""PostgreSQL through psycopg 3: the lock wait in the startup packet, an advisory lock for upgrades."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Insert,
    Select,
    Table,
    bindparam,
    cast,
    func,
    literal_column,
    text,
    true,
)
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable

from .._common.search_query import QueryPart
from .._driver.errors import wrap_driver_error
from ._server import read_only_sessions, server_engine_options, server_transaction_begin, set_up_server_engine
from .base import BackendDefaults, EngineSettings, Match, Rows, WordKinds, milliseconds, utc_day

__all__ = ["PG_INDEXED_CHARS", "PG_VECTOR_COLUMN", "POSTGRESQL", "PostgreSQL"]

#: PostgreSQL indexes the first this many characters of a message (a tsvector
#: holds at most 1 MiB); migration 0008 carries a frozen copy in its index.
PG_INDEXED_CHARS = 100_000
#: PostgreSQL's generated column holding each message's ``tsvector`` (migration 0008), outside
#: the models: the other backends have no such column.
PG_VECTOR_COLUMN = "content_tsv"

#: libpq's ``PQTRANSACTION_IDLE``: no transaction open on the connection.
_IDLE = 0
#: SQLSTATE ``disk_full``: "could not extend file ...: No space left on device", and its kin.
_DISK_FULL = "53100"

#: The advisory lock that serialises schema upgrades: "Starpod", any constant shared by all processes.
_LOCK_ID = 0x5374_6172_706F_64


class PostgreSQL(BackendDefaults):
    """PostgreSQL (see :class:`~.base.Backend`)."""

    name = "postgresql"
    holds_connections = False
    indexes_in_batches = False  # a generated column: every message is indexed as it is stored
    conflict_raises = False
    indexes_words = False
    shares_report_groups = True

    def create_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        connect_args = server_engine_options(engine_options)
        # In the startup packet (no round trip); after any options the URL gives, so ours wins.
        given = connect_args.get("options", url.query.get("options", ""))
        given = " ".join(given) if isinstance(given, tuple) else given
        connect_args["options"] = f"{given} -c lock_timeout={milliseconds(settings.lock_timeout)}".strip()
        # Looked up on the module at each call: see engine.create_storage_engine.
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, **engine_options)
        return set_up_server_engine(engine, engine_options)

    def transaction_begin(self, engine: Engine, *, read_only: bool, snapshot: bool) -> str | None:
        return server_transaction_begin(snapshot)

    def insert_skipping_conflict(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]]
    ) -> Executable:
        return postgresql_dialect.insert(table).values(values).on_conflict_do_nothing(index_elements=unique)

    writes_in_ctes = True

    def insert_selected_skipping_conflict(
        self, table: Table, names: Sequence[str], rows: Select[Any], unique: Sequence[Column[Any]]
    ) -> Insert:
        return postgresql_dialect.insert(table).from_select(names, rows).on_conflict_do_nothing(index_elements=unique)

    @contextmanager
    def statement_alone(self, driver_connection: Any) -> Iterator[None]:
        # psycopg sends BEGIN before a transaction's first statement and COMMIT on commit: a statement run
        # in autocommit is the same one transaction (all of it or nothing) in one round trip instead of three.
        if driver_connection.info.transaction_status != _IDLE:
            yield
            return
        driver_connection.autocommit = True
        try:
            yield
        finally:
            try:
                driver_connection.autocommit = False
            except Exception:
                # Only a connection gone bad refuses (it is not idle): never hand it out in autocommit.
                driver_connection.close()
                raise

    def is_disk_full(self, error: BaseException) -> bool:
        return getattr(error, "sqlstate", None) == _DISK_FULL

    def in_code_points(self, name: ColumnElement[Any]) -> ColumnElement[Any]:
        return name.collate("C")  # PostgreSQL would order names by its locale

    def match_values(self, indexed: tuple[QueryPart, ...], kinds: WordKinds) -> dict[str, str]:
        return {"fts_query": _tsquery(indexed)}

    def match(self, messages: Table, kinds: WordKinds, needs_row: bool, *, waiting: bool = False) -> Match:
        # The stored tsvector: ranking reads it instead of parsing each match's content
        # again. The tsquery is a FROM item, built once even where a prepared
        # statement's generic plan would otherwise build it for every row.
        vector: ColumnElement[Any] = literal_column(f"{messages.name}.{PG_VECTOR_COLUMN}")
        fts_query: BindParameter[str] = bindparam("fts_query")
        parsed = (
            func.to_tsquery(literal_column("'simple'::regconfig"), fts_query)
            .table_valued("tsquery")
            .render_derived(name="q")
        )
        tsquery = parsed.c.tsquery
        score = cast(func.ts_rank(vector, tsquery), Float)
        return [vector.op("@@")(tsquery)], score, messages.join(parsed, true()), messages.c.id

    def contains(self, lowered: ColumnElement[Any], part: BindParameter[str]) -> ColumnElement[Any]:
        return func.strpos(lowered, part) > 0

    def lock_schema(self, connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})

    def read_only_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        engine = self.create_engine(url, settings, engine_options)
        return read_only_sessions(engine, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

    def load_rows(
        self, connection: Connection, table: Table, columns: Sequence[Column[Any]], rows: Rows, statement: str
    ) -> None:
        # COPY ... FROM STDIN (psycopg): several times faster than INSERTs.
        quote = connection.dialect.identifier_preparer.quote
        names = ", ".join(quote(column.name) for column in columns)
        copy_statement = f"COPY {quote(table.name)} ({names}) FROM STDIN"
        driver_connection: Any = connection.connection.dbapi_connection  # a psycopg Connection
        try:
            with driver_connection.cursor() as cursor, cursor.copy(copy_statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except connection.dialect.loaded_dbapi.Error as error:
            raise wrap_driver_error(error, connection.dialect, statement=copy_statement) from error

    def id_counter(self, connection: Connection, table: str, column: str) -> int:
        sequence = _sequence(connection, table, column)
        if sequence is None:
            return 0
        last, called = connection.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        return int(last if called else last - 1)

    def advance_id_counter(self, connection: Connection, table: str, column: str, mark: int) -> None:
        sequence = _sequence(connection, table, column)
        if sequence is None:
            return
        largest = connection.execute(text(f"SELECT max({column}) FROM {table}")).scalar() or 0
        mark = max(mark, int(largest))
        if mark > 0:
            connection.execute(text(f"SELECT setval('{sequence}', :mark, true)"), {"mark": mark})


def _sequence(connection: Connection, table: str, column: str) -> str | None:
    """The sequence behind ``table.column`` (its ``SERIAL``/identity), if any."""
    sequence: str | None = connection.execute(
        text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table, "column": column}
    ).scalar()
    return sequence


@compiles(utc_day, "postgresql")
def _utc_day(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # A bare ::date would use the connection's TimeZone setting.
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


def _tsquery(parts: tuple[QueryPart, ...]) -> str:
    """PostgreSQL: ``'word' & 'pre':* & ('two' <-> 'words')``."""

    def quoted(word: str) -> str:
        return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"

    terms = []
    for part in parts:
        if len(part.words) > 1:
            terms.append("(" + " <-> ".join(map(quoted, part.words)) + ")")
        else:
            terms.append(quoted(part.words[0]) + (":*" if part.prefix else ""))
    return " & ".join(terms)


#: The PostgreSQL backend.
POSTGRESQL = PostgreSQL()
