"""The raw-driver floors: one bare driver connection per backend, with our connection settings.

Each workload module writes its own floor side (the same logical work as ours,
by hand) on top of these: ``write()`` / ``read()`` transactions, ``stamp`` /
``parse`` of timestamps in the backend's stored shape, ``insert_id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import URL

from starpod_session._common.timestamps import format_rfc3339
from starpod_session.backends.engine import DEFAULT_SQLITE_CACHE_MIB

UTC = timezone.utc


class Floor:
    """One bare driver connection doing by hand what each public call does."""

    backend: str

    def __init__(self, url: URL) -> None:
        self.url = url

    # per-backend hooks ----------------------------------------------------
    def write(self) -> Any: ...
    def read(self) -> Any: ...
    def stamp(self, moment: datetime) -> Any: ...
    def parse(self, value: Any) -> datetime: ...
    def insert_id(self, cursor: Any, sql: str, params: tuple) -> int: ...
    def close(self) -> None: ...

    def sql(self, statement: str) -> str:
        return statement

    # shared by the workloads ---------------------------------------------
    def replay(self, statements: list[tuple[str, Any]]) -> list[list[tuple]]:
        """Run captured statements in one read transaction; sums become float/int as ours makes them."""
        results = []
        with self.read() as cur:
            for statement, parameters in statements:
                cur.execute(statement, parameters)
                results.append([tuple(_number(v) for v in row) for row in cur.fetchall()])
        return results

    # bulk loading ---------------------------------------------------------
    def load(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        placeholders = ", ".join("?" for _ in columns)
        with self.write() as cur:
            cur.executemany(self.sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"), rows)


def _number(value: Any) -> Any:
    # Decimal sums (servers) become float or int, as the repositories convert them.
    if value.__class__.__name__ == "Decimal":
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class SqliteFloor(Floor):
    backend = "sqlite"

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        self.conn = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
        for pragma in (
            "busy_timeout = 5000",
            "foreign_keys = ON",
            "journal_mode = WAL",
            "synchronous = NORMAL",
            f"cache_size = {-1024 * DEFAULT_SQLITE_CACHE_MIB}",  # the page cache ours keeps
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self.cur = self.conn.cursor()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Cursor]:
        cur = self.cur
        cur.execute(begin)
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def write(self) -> Any:
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> Any:
        return self._transaction("BEGIN")

    def stamp(self, moment: datetime) -> str:
        return format_rfc3339(moment)  # the stored shape, as ours writes it

    def parse(self, value: str) -> datetime:
        return datetime.fromisoformat(value)

    def insert_id(self, cursor: Any, sql: str, params: tuple) -> int:
        cursor.execute(sql, params)
        return cursor.lastrowid

    def close(self) -> None:
        self.conn.close()


class PostgresFloor(Floor):
    backend = "postgresql"

    def __init__(self, url: URL) -> None:
        import psycopg

        super().__init__(url)
        self.writer = psycopg.connect(dbname=url.database, **_server_kwargs(url))
        self.writer.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        self.reader = psycopg.connect(dbname=url.database, **_server_kwargs(url))
        self.reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def write(self) -> Any:
        return _server_transaction(self.writer)

    def read(self) -> Any:
        return _server_transaction(self.reader)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def stamp(self, moment: datetime) -> datetime:
        return moment

    def parse(self, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def insert_id(self, cursor: Any, sql: str, params: tuple) -> int:
        cursor.execute(self.sql(sql) + " RETURNING id", params)
        return cursor.fetchone()[0]

    def load(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        # COPY: PostgreSQL's bulk path (executemany is a round trip per row).
        with self.write() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


class MariaFloor(Floor):
    backend = "mariadb"

    def __init__(self, url: URL) -> None:
        import pymysql
        from pymysql.constants import CLIENT

        super().__init__(url)
        # FOUND_ROWS: an UPDATE's rowcount counts the rows it matched, as on ours
        # (SQLAlchemy sets it), so "one row or SessionNotFound" reads the same.
        options = dict(
            _server_kwargs(url),
            database=url.database,
            charset="utf8mb4",
            autocommit=False,
            client_flag=CLIENT.FOUND_ROWS,
        )
        self.writer = pymysql.connect(**options)
        self.reader = pymysql.connect(**options)
        with self.writer.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        with self.reader.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    write = PostgresFloor.write
    read = PostgresFloor.read
    sql = PostgresFloor.sql

    def stamp(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC).replace(tzinfo=None)

    def parse(self, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC)

    def insert_id(self, cursor: Any, sql: str, params: tuple) -> int:
        cursor.execute(self.sql(sql), params)
        return cursor.lastrowid

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


@contextmanager
def _server_transaction(conn: Any) -> Iterator[Any]:
    with conn.cursor() as cur:
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _server_kwargs(url: URL) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"host": url.host or "127.0.0.1", "user": url.username}
    if url.port:
        kwargs["port"] = url.port
    if url.password:
        kwargs["password"] = url.password
    return kwargs
