"""MariaDB (and MySQL) through PyMySQL: utf8mb4, large packets, lock waits, a reset only when needed."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from contextlib import closing
from typing import Any

import sqlalchemy
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Table,
    Text,
    bindparam,
    cast,
    collate,
    column,
    event,
    func,
    insert,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.functions import FunctionElement

from .._common.search_query import MAX_INDEXED_WORD, QueryPart
from . import galera
from ._server import read_only_sessions, server_engine_options, server_transaction_begin, set_up_server_engine
from .base import BackendDefaults, EngineSettings, Match, PackedKind, WordKinds, utc_day

__all__ = ["GROUP_CONCAT_MAX_LEN", "MARIADB", "MYSQL_MAX_ALLOWED_PACKET", "WORDS_TABLE", "MariaDB", "words_table"]

#: The packet size the MariaDB client allows, and the server's ``max_allowed_packet``
#: this library needs: a message of 16 MiB plus its statement must fit in one packet.
MYSQL_MAX_ALLOWED_PACKET = 64 * 1024 * 1024

#: The longest ``GROUP_CONCAT`` a connection makes (the server's default, 1 MiB, would cut a packed
#: listing of some thousands of sessions); one longer still is cut, and its reader falls back to rows.
GROUP_CONCAT_MAX_LEN = MYSQL_MAX_ALLOWED_PACKET

#: MariaDB's index (migration 0010): one row per (word, message), ``hits`` how often the
#: word occurs in the message; primary key (word, message_id). Outside the models: the
#: other backends have no such table.
WORDS_TABLE = "session_message_words"
#: :data:`WORDS_TABLE` for statements.
words_table = table(WORDS_TABLE, column("word"), column("message_id"), column("hits"))
_words = words_table

#: The bit of MariaDB's server status that says a transaction is open (``SERVER_STATUS_IN_TRANS``).
_IN_TRANSACTION = 1

#: The errors of a full disk: ER_DISK_FULL, ER_RECORD_FILE_FULL ("The table ... is full"); and
#: ER_ERROR_ON_WRITE, ER_GET_ERRNO when the operating system's error they carry is ENOSPC (28).
_DISK_FULL = frozenset({1021, 1114})
_OS_ERROR = frozenset({3, 1030})
_ENOSPC = re.compile(r"\b28\b")

#: The named lock that serialises schema upgrades.
_LOCK_NAME = "starpod_session.migrate"


class MariaDB(BackendDefaults):
    """MariaDB, or MySQL behind a ``mysql+pymysql://`` URL (see :class:`~.base.Backend`)."""

    name = "mariadb"
    holds_connections = False
    indexes_in_batches = False  # the repository writes a message's words as it stores the message
    conflict_raises = True
    indexes_words = True
    shares_report_groups = False

    def create_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        connect_args = server_engine_options(engine_options)
        url = url.update_query_dict({"charset": "utf8mb4"})
        pymysql = url.get_driver_name() == "pymysql"
        if pymysql:
            connect_args.setdefault("max_allowed_packet", MYSQL_MAX_ALLOWED_PACKET)
        # The pool's reset on return is a ROLLBACK, which pymysql sends even when the call's
        # transaction committed: a round trip per call for nothing (psycopg skips it itself).
        # The listener below rolls back only a transaction the server says is open.
        reset_if_open = pymysql and "pool_reset_on_return" not in engine_options
        if reset_if_open:
            engine_options["pool_reset_on_return"] = None
        # Looked up on the module at each call: see engine.create_storage_engine.
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, **engine_options)
        if reset_if_open:

            @event.listens_for(engine, "reset")
            def roll_back_if_open(dbapi_connection: Any, _record: Any, reset_state: Any) -> None:
                # The server reports in every reply whether a transaction is open; pymysql keeps it.
                status = getattr(dbapi_connection, "server_status", None)
                if reset_state.asyncio_safe and (status is None or status & _IN_TRANSACTION):
                    dbapi_connection.rollback()

        lock_timeout = settings.lock_timeout

        @event.listens_for(engine, "connect")
        def limit_lock_waits(dbapi_connection: Any, _record: Any) -> None:
            # Whole seconds, at least 1: the server's own unit and minimum.
            seconds = max(1, math.ceil(lock_timeout))
            with closing(dbapi_connection.cursor()) as cursor:
                cursor.execute(
                    f"SET SESSION innodb_lock_wait_timeout = {seconds}, group_concat_max_len = {GROUP_CONCAT_MAX_LEN}"
                )
            galera.configure_connection(dbapi_connection)  # read-your-writes through any node (galera.py)

        return set_up_server_engine(engine, engine_options)

    def transaction_begin(self, engine: Engine, *, read_only: bool, snapshot: bool) -> str | None:
        return server_transaction_begin(snapshot)

    def system_name(self, dialect: Dialect) -> str:
        return "mariadb" if getattr(dialect, "is_mariadb", False) else "mysql"

    def insert_unless_duplicate(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]], id_column: Column[Any]
    ) -> Executable:
        keep_existing = {id_column.name: func.last_insert_id(id_column)}
        return mysql_dialect.insert(table).values(values).on_duplicate_key_update(keep_existing)

    def is_disk_full(self, error: BaseException) -> bool:
        args = getattr(error, "args", ())
        number = args[0] if args and isinstance(args[0], int) else None
        return number in _DISK_FULL or (number in _OS_ERROR and bool(_ENOSPC.search(str(args[1:]))))

    def insert_skipping_conflict(
        self, table: Table, values: dict[str, Any], unique: Sequence[Column[Any]]
    ) -> Executable:
        return insert(table).values(values)  # no ON CONFLICT for one index: the caller catches the IntegrityError

    def word_kinds(self, indexed: tuple[QueryPart, ...]) -> WordKinds:
        return tuple(map(_word_part, indexed))

    def match_values(self, indexed: tuple[QueryPart, ...], kinds: WordKinds) -> dict[str, str]:
        return _word_values(indexed, kinds)

    def match(self, messages: Table, kinds: WordKinds, needs_row: bool, *, waiting: bool = False) -> Match:
        return _match_words(messages, kinds, needs_row)

    def contains(self, lowered: ColumnElement[Any], part: BindParameter[str]) -> ColumnElement[Any]:
        return func.locate(part, lowered) > 0

    packs_rows = True

    def packed_rows(
        self, values: Sequence[tuple[ColumnElement[Any], PackedKind]], order_by: Sequence[ColumnElement[Any]]
    ) -> ColumnElement[str]:
        # CONCAT of a DOUBLE column writes the shortest text that reads back as the same double (a number
        # computed by an expression may get 15 digits only: see _match_words); every text part is cast to
        # one collation (the key columns' utf8mb4_nopad_bin and the JSON columns' utf8mb4_bin do not mix).
        parts: list[ColumnElement[Any]] = []
        for value, kind in values:
            if parts:
                parts.append(literal_column("','"))
            if kind == "text":
                parts.append(collate(func.json_quote(value), _PACKED_COLLATION))
            elif kind == "json":
                parts.append(collate(value, _PACKED_COLLATION))
            else:
                parts.append(value)
        row = func.concat(literal_column("'['"), *parts, literal_column("']'"))
        return func.concat(literal_column("'['"), _group_concat(row, *order_by), literal_column("']'"))

    def lock_schema(self, connection: Connection) -> None:
        if galera.is_galera(connection):
            # GET_LOCK holds on one node only: a row every node sees (galera.py).
            galera.lock_migrations(connection)
            return
        # MariaDB commits implicitly around DDL, so a transaction cannot hold the
        # lock; a named lock lives as long as the connection.
        connection.execute(text("SELECT GET_LOCK(:name, 600)"), {"name": _LOCK_NAME})

    def schema_upgraded(self, connection: Connection) -> None:
        # The named lock outlives the transaction: commit the stamp before it goes,
        # or the next process reads the last DDL's implicit commit and migrates again.
        connection.exec_driver_sql("COMMIT")

    def unlock_schema(self, connection: Connection) -> None:
        if galera.is_galera(connection):
            galera.unlock_migrations(connection)
            return
        _unlock(connection)

    def read_only_engine(self, url: URL, settings: EngineSettings, engine_options: dict[str, Any]) -> Engine:
        engine = self.create_engine(url, settings, engine_options)
        return read_only_sessions(engine, "SET SESSION TRANSACTION READ ONLY")

    # load_rows: the INSERT for each row, which pymysql's executemany sends as multi-row INSERTs;
    # a message's words go into WORDS_TABLE beside it (indexes_words).

    def id_counter(self, connection: Connection, table: str, column: str) -> int:
        following = connection.execute(
            text(
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name"
            ),
            {"name": table},
        ).scalar()
        return int((following or 1) - 1)

    def advance_id_counter(self, connection: Connection, table: str, column: str, mark: int) -> None:
        if mark > 0:
            connection.exec_driver_sql(f"ALTER TABLE {table} AUTO_INCREMENT = {int(mark) + 1}")


#: The collation :meth:`MariaDB.packed_rows` writes its text in (the tables' default).
_PACKED_COLLATION = "utf8mb4_bin"


class _group_concat(FunctionElement[str]):
    """``GROUP_CONCAT(value ORDER BY ... SEPARATOR ',')``: the first clause the value, the others its order.

    Its length is bounded by the session's ``group_concat_max_len`` (set at connect: :data:`GROUP_CONCAT_MAX_LEN`);
    a longer one is cut (with a warning), which :meth:`MariaDB.packed_rows`' callers detect.
    """

    type = Text()
    inherit_cache = True


@compiles(_group_concat)
def _compile_group_concat(element: _group_concat, compiler: SQLCompiler, **kw: Any) -> str:
    value, *order = element.clauses.clauses
    ordered = ", ".join(compiler.process(clause, **kw) for clause in order)
    return f"GROUP_CONCAT({compiler.process(value, **kw)} ORDER BY {ordered} SEPARATOR ',')"


@compiles(utc_day)
def _utc_day(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # MariaDB (the default: SQLite and PostgreSQL register their own): DATETIME(6) already holds UTC.
    return f"DATE({compiler.process(element.clauses, **kw)})"


def _match_words(messages: Table, kinds: WordKinds, needs_row: bool) -> Match:
    """MariaDB: the indexed parts through ``session_message_words`` (migration 0010).

    Each word is a range of the table's primary key (a prefix: a range grouped per
    message), joined on the message id, so the engine starts from the rarest word
    and looks the others up by key; a phrase joins each of its words and its
    content must match the phrase's pattern. Every hit holds every word, so the
    score ranks by how often it holds them: the sum of BM25's saturated counts
    ``hits * (k1 + 1) / (hits + k1)``, k1 = 1.2 (no weighting by rarity, which would
    cost a count of each word's messages per query, and no length normalisation).
    """
    sources: list[FromClause] = []
    conditions: list[ColumnElement[Any]] = []
    terms: list[ColumnElement[Any]] = []
    for i, (count, prefix, verify) in enumerate(kinds):
        for j in range(count):
            word: BindParameter[str] = bindparam(f"word_{i}_{j}")
            if prefix:
                source: FromClause = (
                    select(_words.c.message_id, func.sum(_words.c.hits).label("hits"))
                    .where(_words.c.word.like(word))
                    .group_by(_words.c.message_id)
                    .subquery(f"w{i}_{j}")
                )
            else:
                source = _words.alias(f"w{i}_{j}")
                conditions.append(source.c.word == word)
            hits = source.c.hits
            # Doubles (2.2e0): a decimal literal would make MariaDB compute in DECIMAL.
            terms.append(hits * literal_column("2.2e0") / (hits + literal_column("1.2e0")))
            sources.append(source)
        if verify:
            conditions.append(messages.c.content.regexp_match(bindparam(f"verify_{i}")))
    first = sources[0]
    joined: FromClause = first
    for source in sources[1:]:
        joined = joined.join(source, source.c.message_id == first.c.message_id)
    if needs_row:
        joined = joined.join(messages, messages.c.id == first.c.message_id)
    score = terms[0]
    for term in terms[1:]:
        score = score + term
    # MariaDB sends doubles as text with 15 digits, which need not read back as the
    # same double; rounded to 9 decimals, the score a cursor carries compares equal.
    return conditions, func.round(cast(score, Float), 9), joined, first.c.message_id


def _word_part(part: QueryPart) -> tuple[int, bool, bool]:
    """(words, prefix, verify) of an indexed part on MariaDB (see ``WordKinds``)."""
    # A word of MAX_INDEXED_WORD characters or more is only known by its start in the index.
    too_long = any(len(word) >= MAX_INDEXED_WORD for word in part.words)
    return len(part.words), part.prefix and not too_long, len(part.words) > 1 or too_long


def _word_values(parts: tuple[QueryPart, ...], kinds: WordKinds) -> dict[str, str]:
    """The bound values of :func:`_match_words` (``kinds``: :func:`_word_part` of each part): each word as the
    index keeps it, a prefix as a LIKE pattern."""
    values: dict[str, str] = {}
    for i, (part, (_count, prefix, verify)) in enumerate(zip(parts, kinds, strict=True)):
        for j, word in enumerate(part.words):
            # Words are letters and digits only: no LIKE wildcard or escape in them.
            values[f"word_{i}_{j}"] = word[:MAX_INDEXED_WORD] + ("%" if prefix else "")
        if verify:
            values[f"verify_{i}"] = _word_pattern(part)
    return values


def _word_pattern(part: QueryPart) -> str:
    """A case-insensitive PCRE matching a part's words in a row (a phrase, or a word the index keeps cut)."""
    body = r"[^[:alnum:]]+".join(part.words)
    end = "" if part.prefix else "(?![[:alnum:]])"
    return f"(?i)(?<![[:alnum:]]){body}{end}"


#: The MariaDB backend.
MARIADB = MariaDB()


def _unlock(connection: Connection) -> None:
    """Release the upgrade lock (a module function: tests observe when it goes)."""
    connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
