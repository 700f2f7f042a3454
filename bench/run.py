#!/usr/bin/env python3
"""Benchmark: SessionManager against the raw-SQL floor, in one process and one run.

    python3 bench/run.py                     # SQLite, full scale (a few minutes)
    python3 bench/run.py --quick             # SQLite, small scale (a smoke test)
    python3 bench/run.py --url postgresql+psycopg://postgres@127.0.0.1:5432/starpod_bench \\
                         --url mysql+pymysql://root@127.0.0.1:3306/starpod_bench --server-rows 200000

Every workload runs on our ``SessionManager`` and, interleaved in blocks on the
same database, through the bare driver (``sqlite3``, ``psycopg``, ``pymysql``)
doing the same logical work per call with the same SQL and durability settings:

* SQLite floor connections run ``busy_timeout=5000``, ``foreign_keys=ON``, WAL
  and ``synchronous=NORMAL``; writes start with ``BEGIN IMMEDIATE``, reads with
  ``BEGIN``, every call commits, exactly as ours.
* Server floors write at READ COMMITTED and read at REPEATABLE READ, as ours.
  (Ours also pings a pooled connection before use, ``pool_pre_ping``; the floor
  holds one connection and does not.)

What each floor does per call (one transaction each):

* ``save_message``: ``UPDATE ... SET last_message_at = now`` (and, for a
  ``user`` message with text, ``title = COALESCE(title, ?)``, cut to 100 UTF-8
  bytes) ``WHERE id = ?``, one row changed or ``SessionNotFound``; ``INSERT``
  the message with the same timestamp and read back its id.
* ``resolve+touch``: two transactions, as a caller of ours makes them. Resolve
  selects ``(id, last_message_at)`` of the open session of (channel, key, user)
  through ``open_slot = 1``, parses the timestamp and checks the telegram gap
  (closing the session if stale); touch runs ``UPDATE ... SET last_message_at,
  message_count = message_count + 1`` and checks one row changed.
* ``get_messages``: selects the session's messages ordered by id and builds one
  tuple per row with the timestamp parsed into an aware ``datetime``.
* ``record_usage``: ``SELECT user_id`` of the session (the row's user when the
  record names none), ``INSERT`` the usage row.
* ``cost_overview``: replays, through the driver and in one read transaction,
  the very statements (and parameters) ours emitted for the same call, captured
  with a ``before_cursor_execute`` hook, and fetches every row converting sums
  to float/int. The ratio is our overhead over that SQL; the absolute time of
  the SQL itself is checked by the "under 1 s" target.
* ``search_messages``: the first page (20 hits) of a two-word query over
  ``--server-rows`` / a million messages of 8-30 words each; the floor replays
  the statement ours emitted through the driver and fetches its rows, so the
  ratio is our overhead (parsing, snippets, records) over the engine's own
  full-text query; the target is an absolute 50 ms.
* ``list_sessions``: ``SELECT`` the twelve metadata columns ``ORDER BY
  last_message_at DESC, created_at DESC, id DESC LIMIT 20``, timestamps parsed,
  flags made bools.

Scaling compares our own per-call latency (save_message, resolve_session,
get_messages of a 100-message session) on a database of 1,000 rows per table
with one of 1,000,000 rows per table, interleaved in blocks.

Big datasets are bulk-loaded with the raw driver (``executemany`` in one
transaction; ``COPY`` on PostgreSQL) into a database our manager created, so
the schema is ours; SQLite timestamps are written in the exact stored format.
Server databases are scratch databases: the script creates ``<db>_calls``,
``<db>_list``, ``<db>_1k`` and ``<db>_big`` beside the one named in the URL and
drops their tables when it is done.

Exit status: 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url

from starpod_session import Channel, SessionManager, UsageRecord
from starpod_session.tool_calls import read_tool_use
from starpod_session.timestamps import format_rfc3339
from starpod_session.titles import shorten_title

UTC = timezone.utc
T0 = datetime(2025, 1, 1, tzinfo=UTC)
MODELS = ("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gemini-2.5-pro", None)
USERS = tuple(f"user-{n:02d}" for n in range(20))
TELEGRAM_GAP = timedelta(minutes=360)
AUTO_CLOSE = "Auto-closed: inactivity"

# --------------------------------------------------------------------------
# scale


@dataclass(frozen=True)
class Scale:
    save_sessions: int = 20
    save_per_session: int = 500
    hot_calls: int = 3000
    get_small_calls: int = 2000
    get_large_calls: int = 40
    usage_calls: int = 5000
    overview_calls: int = 5
    list_sessions_rows: int = 100_000
    list_calls: int = 3000
    small_rows: int = 1_000
    big_rows: int = 1_000_000
    scaling_calls: int = 3000
    search_calls: int = 200


FULL = Scale()
QUICK = Scale(5, 100, 300, 300, 5, 500, 2, 10_000, 300, 1_000, 100_000, 300, 50)

# --------------------------------------------------------------------------
# raw-driver floors


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

    # workloads ------------------------------------------------------------
    def _owner(self, cur: Any, session_id: str) -> str:
        cur.execute(self.sql("SELECT user_id FROM session_metadata WHERE id = ?"), (session_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(session_id)
        return row[0]

    def save_message(self, session_id: str, role: str, content: str) -> int:
        title = shorten_title(content) if role == "user" and content.strip() else None
        now = self.stamp(datetime.now(UTC))
        with self.write() as cur:
            if title is None:
                cur.execute(self.sql("UPDATE session_metadata SET last_message_at = ? WHERE id = ?"), (now, session_id))
            else:
                cur.execute(
                    self.sql("UPDATE session_metadata SET last_message_at = ?, title = COALESCE(title, ?) WHERE id = ?"),
                    (now, title, session_id),
                )
            if cur.rowcount != 1:
                raise LookupError(session_id)
            return self.insert_id(
                cur,
                "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)",
                (session_id, role, content, now),
            )

    def resolve(self, channel: str, key: str, user_id: str = "admin") -> str | None:
        with self.write() as cur:
            cur.execute(
                self.sql(
                    "SELECT id, last_message_at FROM session_metadata WHERE channel = ? "
                    "AND channel_session_key = ? AND user_id = ? AND open_slot = 1"
                ),
                (channel, key, user_id),
            )
            row = cur.fetchone()
            if row is None:
                return None
            last = self.parse(row[1])
            if channel == "telegram" and datetime.now(UTC) - last >= TELEGRAM_GAP:
                cur.execute(
                    self.sql("UPDATE session_metadata SET is_closed = true, summary = ? WHERE id = ? AND is_closed = false"),
                    (AUTO_CLOSE, row[0]),
                )
                return None
            return row[0]

    def touch(self, session_id: str) -> None:
        with self.write() as cur:
            cur.execute(
                self.sql(
                    "UPDATE session_metadata SET last_message_at = ?, message_count = message_count + 1 WHERE id = ?"
                ),
                (self.stamp(datetime.now(UTC)), session_id),
            )
            if cur.rowcount != 1:
                raise LookupError(session_id)

    def get_messages(self, session_id: str) -> list[tuple]:
        parse = self.parse
        with self.read() as cur:
            cur.execute(
                self.sql(
                    "SELECT id, session_id, role, content, timestamp FROM session_messages "
                    "WHERE session_id = ? ORDER BY id"
                ),
                (session_id,),
            )
            return [(i, s, r, c, parse(t)) for i, s, r, c, t in cur.fetchall()]

    def record_usage(self, session_id: str, record: UsageRecord, turn: int) -> None:
        with self.write() as cur:
            owner = self._owner(cur, session_id)
            cur.execute(
                self.sql(
                    "INSERT INTO usage_stats (session_id, turn, input_tokens, output_tokens, cache_read, "
                    "cache_write, cost_usd, model, user_id, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (
                    session_id, turn, record.input_tokens, record.output_tokens, record.cache_read,
                    record.cache_write, float(record.cost_usd), record.model, record.user_id or owner,
                    self.stamp(datetime.now(UTC)),
                ),
            )  # fmt: skip

    def list_sessions(self, limit: int) -> list[tuple]:
        parse = self.parse
        with self.read() as cur:
            cur.execute(
                self.sql(
                    "SELECT id, created_at, last_message_at, is_closed, summary, title, message_count, channel, "
                    "channel_session_key, user_id, is_read, triggered_by FROM session_metadata "
                    "ORDER BY last_message_at DESC, created_at DESC, id DESC LIMIT ?"
                ),
                (limit,),
            )
            return [
                (r[0], parse(r[1]), parse(r[2]), bool(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11])
                for r in cur.fetchall()
            ]

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
            cur.executemany(
                self.sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"), rows
            )


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
        for pragma in ("busy_timeout = 5000", "foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL"):
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
        with self.write() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


class MariaFloor(Floor):
    backend = "mariadb"

    def __init__(self, url: URL) -> None:
        import pymysql

        super().__init__(url)
        options = dict(_server_kwargs(url), database=url.database, charset="utf8mb4", autocommit=False)
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


# --------------------------------------------------------------------------
# databases


class Target:
    """Where the databases of one backend live: files in a temp dir, or scratch server databases."""

    def __init__(self, url: URL | None, workdir: Path) -> None:
        self.base = url
        self.workdir = workdir
        self.backend = "sqlite" if url is None else _backend_of(url)
        self._made: list[URL] = []

    def fresh(self, name: str) -> URL:
        """An empty database (no tables) called ``name``."""
        if self.base is None:
            path = self.workdir / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = URL.create("sqlite+pysqlite", database=str(path))
        else:
            url = self.base.set(database=f"{self.base.database}_{name}")
            _create_server_database(self.base, url.database)
            _drop_tables(url)
        self._made.append(url)
        return url

    def floor(self, url: URL) -> Floor:
        return {"sqlite": SqliteFloor, "postgresql": PostgresFloor, "mariadb": MariaFloor}[self.backend](url)

    def cleanup(self) -> None:
        if self.base is not None:
            for url in self._made:
                _drop_tables(url)


def _backend_of(url: URL) -> str:
    name = url.get_backend_name()
    return "mariadb" if name in ("mysql", "mariadb") else name


def _create_server_database(base: URL, name: str) -> None:
    # Connect to the server's own database: the one in the URL need not exist.
    admin_url = base.set(database="postgres" if _backend_of(base) == "postgresql" else "mysql")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if _backend_of(base) == "postgresql":
                found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
                if found is None:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    finally:
        admin.dispose()


def _drop_tables(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            reflected = MetaData()
            reflected.reflect(conn)
            reflected.drop_all(conn)
    finally:
        engine.dispose()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Dataset:
    """What a loaded database holds that the workloads need."""

    url: URL
    sessions: list[str] = field(default_factory=list)
    main_keys: list[str] = field(default_factory=list)  # keys of open main sessions
    with_100: str = ""
    with_10k: str | None = None


SESSION_COLUMNS = (
    "id", "created_at", "last_message_at", "is_closed", "summary", "message_count",
    "channel", "channel_session_key", "title", "user_id", "is_read",
)  # fmt: skip
MESSAGE_COLUMNS = ("session_id", "role", "content", "timestamp")
USAGE_COLUMNS = (
    "session_id", "turn", "input_tokens", "output_tokens", "cache_read", "cache_write",
    "cost_usd", "model", "user_id", "timestamp",
)  # fmt: skip


TOOLS = ("Bash", "Read", "Edit", "MemorySearch", "VaultGet", "WebFetch", "CronList")


def load_tool_calls(floor: Floor, is_bool: bool) -> None:
    """The ``tool_calls`` rows ``save_message`` would have written for the loaded ``tool_use`` messages
    (one in seven failed)."""
    with floor.read() as cur:
        cur.execute("SELECT id, session_id, content, timestamp FROM session_messages WHERE role = 'tool_use'")
        uses = cur.fetchall()
    rows = []
    for n, (message_id, session_id, content, moment) in enumerate(uses):
        use = read_tool_use(content)
        failed = n % 7 == 0
        rows.append((message_id, session_id, "tool_use", use.call_id, use.tool_name, moment, failed if is_bool else int(failed)))
    floor.load("tool_calls", ("message_id", "session_id", "role", "call_id", "tool_name", "timestamp", "is_error"), rows)


def load_dataset(target: Target, name: str, *, sessions: int, messages: int, usage: int, with_10k: bool) -> Dataset:
    """A database our manager created, filled through the raw driver."""
    url = target.fresh(name)
    SessionManager(url).close()  # our schema, at head
    rng = random.Random(name)
    floor = target.floor(url)
    if isinstance(floor, SqliteFloor):
        floor.conn.execute("PRAGMA cache_size = -500000")  # 500 MB while loading
    is_bool = target.backend != "sqlite"

    data = Dataset(url)
    rows = []
    ids = sorted(_uuid(rng) for _ in range(sessions))  # sorted: the primary key loads in order
    spacing = timedelta(days=360) / max(sessions, 1)
    for n, session_id in enumerate(ids):
        created = T0 + spacing * n
        is_open = n % 10 == 0
        channel = "main" if n % 2 == 0 else "telegram"
        key = f"key-{n}"
        if is_open and channel == "main":
            data.main_keys.append(key)
        rows.append((
            session_id, floor.stamp(created), floor.stamp(created + timedelta(seconds=rng.randrange(3600))),
            (not is_open) if is_bool else int(not is_open), None if is_open else "done", 10, channel, key,
            f"Session {n}", USERS[n % len(USERS)], True if is_bool else 1,
        ))  # fmt: skip
    floor.load("session_metadata", SESSION_COLUMNS, rows)
    data.sessions = ids
    # The 100-message session (and the 10,000-message one) are open main sessions.
    data.with_100 = ids[0]
    data.with_10k = ids[10] if with_10k else None

    fixed = [(data.with_100, 100)] + ([(data.with_10k, 10_000)] if with_10k else [])
    rows = []
    moment = T0
    for session_id, count in fixed:
        for n in range(count):
            moment += timedelta(milliseconds=1500)
            rows.append((session_id, "user" if n % 2 == 0 else "assistant", f"message {n} " + "x" * 150, floor.stamp(moment)))
    filler = max(messages - len(rows), 0)
    others = ids[20:] or ids
    for n in range(filler):
        moment += timedelta(seconds=3)
        if n % 10 == 0:  # one message in ten is a tool call, as the crate's agent saves them
            content = f'{{"type":"tool_use","id":"tu_{n}","name":"{TOOLS[n % len(TOOLS)]}","input":{{}}}}'
            rows.append((others[rng.randrange(len(others))], "tool_use", content, floor.stamp(moment)))
        else:
            rows.append((others[rng.randrange(len(others))], "assistant", f"reply {n} " + "y" * 60, floor.stamp(moment)))
    floor.load("session_messages", MESSAGE_COLUMNS, rows)
    load_tool_calls(floor, is_bool)

    rows = []
    spacing = timedelta(days=360) / max(usage, 1)
    for n in range(usage):
        rows.append((
            ids[rng.randrange(len(ids))], n % 40, rng.randrange(50_000), rng.randrange(5_000), rng.randrange(100_000),
            rng.randrange(10_000), rng.random() / 10, MODELS[n % len(MODELS)], USERS[rng.randrange(len(USERS))],
            floor.stamp(T0 + spacing * n),
        ))  # fmt: skip
    floor.load("usage_stats", USAGE_COLUMNS, rows)
    if isinstance(floor, SqliteFloor):
        floor.conn.execute("ANALYZE")
    elif target.backend == "postgresql":
        with floor.write() as cur:
            cur.execute("ANALYZE")
    floor.close()
    return data


# --------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    latencies: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    @property
    def per_second(self) -> float:
        return len(self.latencies) / sum(self.latencies)


def interleaved(calls: int, *sides: Callable[[int], object], blocks: int = 20, warmup: int = 3) -> list[Timing]:
    """Time ``calls`` calls of every side, alternating sides in blocks so drift hits all alike."""
    for side in sides:
        for n in range(min(warmup, calls)):
            side(calls + n)
    timings = [Timing([]) for _ in sides]
    size = max(1, calls // blocks)
    clock = time.perf_counter
    for start in range(0, calls, size):
        for side, timing in zip(sides, timings):
            record = timing.latencies.append
            for n in range(start, min(calls, start + size)):
                began = clock()
                side(n)
                record(clock() - began)
    return timings


@dataclass
class Report:
    backend: str
    lines: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, bool]] = field(default_factory=list)

    def compare(self, workload: str, ours: Timing, floor: Timing, limit: float) -> None:
        ratio = ours.median / floor.median
        self.lines.append(
            f"{workload:<34} {_ms(ours.median):>9} {_ms(ours.p95):>9} {ours.per_second:>9.0f}"
            f" {_ms(floor.median):>9} {_ms(floor.p95):>9} {floor.per_second:>9.0f} {ratio:>6.2f}x"
        )
        self.check(f"{workload}: ours/floor {ratio:.2f}x <= {limit}x", ratio <= limit)
        print(self.lines[-1], flush=True)

    def check(self, what: str, passed: bool) -> None:
        self.verdicts.append((what, passed))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


HEADER = (
    f"{'workload':<34} {'ours med':>9} {'ours p95':>9} {'ours/s':>9}"
    f" {'floor med':>9} {'floor p95':>9} {'floor/s':>9} {'ratio':>7}"
)


# --------------------------------------------------------------------------
# workloads


class Capture:
    """The statements every engine sends to its driver while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(Engine, "before_cursor_execute", self._hook)

    def _hook(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if self.on and not statement.lstrip().upper().startswith(("BEGIN", "SET ", "SELECT 1", "PRAGMA")):
            self.statements.append((statement, parameters))

    @contextmanager
    def __call__(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements = []
        self.on = True
        try:
            yield self.statements
        finally:
            self.on = False


CAPTURE = Capture()


def per_call_workloads(target: Target, scale: Scale, report: Report) -> None:
    # The 100- and 10,000-message sessions are bulk-loaded; the rest is created through the API.
    data = load_dataset(target, "calls", sessions=40, messages=0, usage=0, with_10k=True)
    floor = target.floor(data.url)
    with SessionManager(data.url) as mgr:
        ours_ids = [mgr.create_session(Channel.MAIN, f"save-ours-{n}") for n in range(scale.save_sessions)]
        floor_ids = [mgr.create_session(Channel.MAIN, f"save-floor-{n}") for n in range(scale.save_sessions)]
        content = "Please summarise the attached meeting notes and list the action items. " * 4
        total = scale.save_sessions * scale.save_per_session

        def role(n: int) -> str:
            return "user" if n % 2 == 0 else "assistant"

        report.compare(
            f"save_message ({scale.save_sessions}x{scale.save_per_session})",
            *interleaved(
                total,
                lambda n: mgr.save_message(ours_ids[n % len(ours_ids)], role(n), content),
                lambda n: floor.save_message(floor_ids[n % len(floor_ids)], role(n), content),
            ),
            limit=3,
        )

        hot_ours = mgr.open_session(Channel.TELEGRAM, "hot-ours").session_id
        hot_floor = mgr.open_session(Channel.TELEGRAM, "hot-floor").session_id

        def ours_hot(_n: int) -> None:
            decision = mgr.resolve_session(Channel.TELEGRAM, "hot-ours")
            mgr.touch_session(decision.session_id)

        def floor_hot(_n: int) -> None:
            floor.touch(floor.resolve("telegram", "hot-floor"))

        report.compare("resolve_session+touch (hot key)", *interleaved(scale.hot_calls, ours_hot, floor_hot), limit=3)
        assert mgr.get_session(hot_ours).is_closed is False and mgr.get_session(hot_floor).is_closed is False

        for label, session_id, calls in (
            ("get_messages (100 msgs)", data.with_100, scale.get_small_calls),
            ("get_messages (10,000 msgs)", data.with_10k, scale.get_large_calls),
        ):
            assert len(mgr.get_messages(session_id)) == len(floor.get_messages(session_id))
            report.compare(
                label,
                *interleaved(calls, lambda _n: mgr.get_messages(session_id), lambda _n: floor.get_messages(session_id)),
                limit=3,
            )

        record = UsageRecord(input_tokens=1200, output_tokens=300, cache_read=4000, cost_usd=0.0123, model="claude-sonnet-4-5")
        report.compare(
            "record_usage",
            *interleaved(
                scale.usage_calls,
                lambda n: mgr.record_usage(ours_ids[0], record, n),
                lambda n: floor.record_usage(floor_ids[0], record, n),
            ),
            limit=3,
        )
    floor.close()


def list_workload(target: Target, scale: Scale, report: Report) -> None:
    rows = scale.list_sessions_rows
    data = load_dataset(target, "list", sessions=rows, messages=0, usage=0, with_10k=False)
    floor = target.floor(data.url)
    with SessionManager(data.url) as mgr:
        assert [s.id for s in mgr.list_sessions(20)] == [r[0] for r in floor.list_sessions(20)]
        report.compare(
            f"list_sessions(20) of {rows:,}",
            *interleaved(scale.list_calls, lambda _n: mgr.list_sessions(20), lambda _n: floor.list_sessions(20)),
            limit=3,
        )
    floor.close()


def big_workloads(target: Target, scale: Scale, rows: int, report: Report) -> None:
    started = time.perf_counter()
    small = load_dataset(target, "1k", sessions=scale.small_rows, messages=scale.small_rows, usage=scale.small_rows, with_10k=False)
    big = load_dataset(target, "big", sessions=rows, messages=rows, usage=rows, with_10k=True)
    print(f"(loaded {scale.small_rows:,} and {rows:,} rows per table in {time.perf_counter() - started:.0f} s)", flush=True)
    floor = target.floor(big.url)
    since = T0 + timedelta(days=330)  # the last 30 of 360 days: about 8% of the rows
    with SessionManager(big.url) as mgr:
        for label, argument in (("cost_overview", None), ("cost_overview(since)", since)):
            with CAPTURE() as statements:
                mgr.cost_overview(argument)
            ours, theirs = interleaved(
                scale.overview_calls, lambda _n: mgr.cost_overview(argument), lambda _n: floor.replay(statements),
                warmup=1,
            )
            report.compare(f"{label} of {rows:,} rows ({len(statements)} stmts)", ours, theirs, limit=1.5)
            if target.backend == "sqlite" and rows >= 1_000_000:
                report.check(f"{label}: {ours.median:.3f} s < 1 s at {rows:,} rows", ours.median < 1.0)
    floor.close()

    print(f"\nscaling (ours only): median per call at {scale.small_rows:,} vs {rows:,} rows per table", flush=True)
    with SessionManager(small.url) as at_small, SessionManager(big.url) as at_big:
        pairs = ((at_small, small), (at_big, big))
        rngs = [random.Random(1), random.Random(1)]

        def saver(mgr: SessionManager, data: Dataset, rng: random.Random) -> Callable[[int], object]:
            targets = data.sessions[1:] if len(data.sessions) < 1000 else data.sessions[1:1000]
            return lambda n: mgr.save_message(targets[rng.randrange(len(targets))], "user" if n % 2 else "assistant", "ok " * 50)

        def resolver(mgr: SessionManager, data: Dataset, rng: random.Random) -> Callable[[int], object]:
            keys = data.main_keys[:1000]
            return lambda _n: mgr.resolve_session(Channel.MAIN, keys[rng.randrange(len(keys))])

        def getter(mgr: SessionManager, data: Dataset, _rng: random.Random) -> Callable[[int], object]:
            return lambda _n: mgr.get_messages(data.with_100)

        for label, make in (("save_message", saver), ("resolve_session", resolver), ("get_messages (100)", getter)):
            at_1k, at_big = interleaved(scale.scaling_calls, *(make(m, d, r) for (m, d), r in zip(pairs, rngs)))
            ratio = at_big.median / at_1k.median
            line = (
                f"{label:<34} {_ms(at_1k.median):>9} ms at {scale.small_rows:,}   {_ms(at_big.median):>9} ms at {rows:,}"
                f"   {ratio:.2f}x"
            )
            print(line, flush=True)
            report.lines.append(line)
            report.check(f"{label}: latency at {rows:,} / at {scale.small_rows:,} rows = {ratio:.2f}x <= 1.3x", ratio <= 1.3)


#: Two-word queries of the search workload: "deploy" is in 1% of the messages,
#: "billing" in 1.2%, both in 0.2% (2,000 of a million messages to rank).
SEARCH_QUERIES = ("deploy billing", "billing deploy*")


def load_search_dataset(target: Target, rows: int) -> URL:
    """``rows`` messages of 8 to 30 words from a 20,000-word vocabulary (Zipf-like), over 10,000 sessions."""
    data = load_dataset(target, "search", sessions=10_000, messages=0, usage=0, with_10k=False)
    rng = random.Random("search")
    vocabulary = [
        "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))
        for _ in range(20_000)
    ]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    cumulative, total = [], 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    floor = target.floor(data.url)
    moment, batch = T0, []
    for n in range(rows):
        words = rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(8, 30))
        if n % 100 == 0:
            words.insert(rng.randrange(len(words)), "deploy")
        if (n % 100 == 0 and n % 500 == 0) or n % 100 == 37:
            words.insert(rng.randrange(len(words)), "billing")
        moment += timedelta(seconds=1)
        batch.append((data.sessions[n % len(data.sessions)], "user" if n % 2 else "assistant", " ".join(words), floor.stamp(moment)))
        if len(batch) == 100_000:
            floor.load("session_messages", MESSAGE_COLUMNS, batch)
            batch = []
    if batch:
        floor.load("session_messages", MESSAGE_COLUMNS, batch)
    floor.close()
    return data.url


def search_workload(target: Target, scale: Scale, rows: int, report: Report) -> None:
    """search_messages' first page against the same SQL run through the bare driver."""
    started = time.perf_counter()
    url = load_search_dataset(target, rows)
    print(f"(loaded {rows:,} searchable messages in {time.perf_counter() - started:.0f} s)", flush=True)
    floor = target.floor(url)
    with SessionManager(url) as mgr:
        for query in SEARCH_QUERIES:
            with CAPTURE() as statements:
                hits = mgr.search_messages(query, limit=20)
            assert len(hits) == 20 and all("«" in hit.snippet for hit in hits)
            ours, theirs = interleaved(
                scale.search_calls, lambda _n: mgr.search_messages(query, limit=20), lambda _n: floor.replay(statements),
                warmup=3,
            )
            report.compare(f"search {query!r} of {rows:,} msgs", ours, theirs, limit=2.0)
            report.check(f"search {query!r}: first page {ours.median * 1000:.1f} ms < 50 ms at {rows:,} messages", ours.median < 0.05)
    floor.close()


# --------------------------------------------------------------------------


def run_backend(target: Target, scale: Scale, rows: int, *, only_search: bool = False) -> Report:
    report = Report(target.backend)
    label = target.backend if target.base is None else target.base.render_as_string(hide_password=True)
    print(f"\n== {label} ==  (times in ms; ratio = median ours / median floor)", flush=True)
    print(HEADER, flush=True)
    try:
        if not only_search:
            per_call_workloads(target, scale, report)
            list_workload(target, scale, report)
            big_workloads(target, scale, rows, report)
        search_workload(target, scale, rows, report)
    finally:
        target.cleanup()
    return report


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    import sqlalchemy

    return (
        f"machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", default=[], help="a PostgreSQL or MariaDB URL of a scratch database (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small scale, for a smoke test")
    parser.add_argument("--no-sqlite", action="store_true", help="run the servers only")
    parser.add_argument("--server-rows", type=int, default=None, help="rows per table of the big dataset on servers (default: as on SQLite)")
    parser.add_argument("--only-search", action="store_true", help="run the search workload only")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    print(machine())
    workdir = Path(tempfile.mkdtemp(prefix="starpod-bench-"))
    reports = []
    try:
        if not args.no_sqlite:
            reports.append(run_backend(Target(None, workdir), scale, scale.big_rows, only_search=args.only_search))
        for raw in args.url:
            rows = args.server_rows or scale.big_rows
            reports.append(run_backend(Target(make_url(raw), workdir), scale, rows, only_search=args.only_search))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n== targets ==")
    failed = 0
    for report in reports:
        for what, passed in report.verdicts:
            failed += not passed
            print(f"{'PASS' if passed else 'FAIL'}  {report.backend:<10} {what}")
    print(f"\n{'all targets pass' if not failed else f'{failed} target(s) FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
