#!/usr/bin/env python3
"""Benchmark: moving a database (copy_database, dump_database, restore_database) against the raw-driver floor.

    python3 bench/transfer.py --messages 1000000 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/starpod_bench \\
        --url mysql+pymysql://root@127.0.0.1:3306/starpod_bench

A SQLite source is built once: ``--messages`` messages of about 100 characters in
sessions of 100 (a session every half hour: a million messages span some 200 days),
one usage row per 10 messages (3 models, 10 users), one compaction per session (bulk
loaded through sqlite3). Then, each in a fresh process (so its peak RSS is its own):

* ``copy``: ``copy_database(source, server)`` for each ``--url``, into a database created empty;
  the floor does the same copy through the bare drivers in one run: the rows read
  with sqlite3 in key order, timestamps parsed and flags made bools, written into a
  database migrated to the same schema (its search index, its usage triggers)
  with PostgreSQL ``COPY`` per table, or MariaDB multi-row ``INSERT`` of 5,000
  rows (pymysql's ``executemany``) with each message's search words
  (``session_message_words``, which the library writes itself there).
* ``dump``: ``dump_database(source, file)``; the floor reads the same rows with
  sqlite3 in one transaction and writes the same JSON lines (and their SHA-256).
* ``restore``: ``restore_database(file, server)``; the floor reads the file
  and ``COPY``s / inserts the rows as the copy floor does.

Ours includes what the floor does not: the verification at the end (a second
read of both sides' counts and sums), the bookkeeping row per batch, and for a
restore the first pass checking the file. Reported: rows per second (all tables'
rows over the wall time), ours/floor, and the peak RSS of the process doing it.
Target: within 2x of the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: Seconds between two sessions' starts: a million messages (10,000 sessions) span about 200 days.
SPACING = 1800
MODELS = ("claude-sonnet", "claude-haiku", "gpt-4.1")
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "session",
    "message",
    "agent",
    "reply",
    "tool",
    "cost",
    "token",
    "search",
]


def stamp(seconds: float) -> str:
    """``T0`` plus ``seconds``, as SQLite stores a timestamp."""
    return (T0 + timedelta(seconds=seconds)).isoformat()


def insert_sessions(raw: sqlite3.Connection, messages: int, rng: random.Random) -> list[str]:
    """A closed session per 100 messages, one every ``SPACING`` seconds; their ids."""
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(1, messages // 100))]
    raw.executemany(
        "INSERT INTO session_metadata (id, created_at, last_message_at, is_closed, message_count, channel, "
        "channel_session_key, user_id) VALUES (?, ?, ?, 1, 100, 'main', ?, 'admin')",
        [(sid, stamp(i * SPACING), stamp(i * SPACING + 99), f"k{i}") for i, sid in enumerate(ids)],
    )
    return ids


def build_source(path: Path, messages: int) -> None:
    from starpod_session import SessionManager

    SessionManager(path).close()
    rng = random.Random(7)
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA synchronous = OFF")
    ids = insert_sessions(raw, messages, rng)
    batch = []
    for n in range(messages):
        content = " ".join(rng.choice(WORDS) for _ in range(18))
        moment = stamp((n // 100) * SPACING + n % 100 + 0.123456)
        batch.append((ids[n // 100], "user" if n % 2 else "assistant", content, moment))
        if len(batch) == 50_000:
            raw.executemany(
                "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?,?,?,?)", batch
            )
            batch = []
    if batch:
        raw.executemany("INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?,?,?,?)", batch)
    raw.executemany(
        "INSERT INTO usage_stats (session_id, turn, input_tokens, output_tokens, cost_usd, model, timestamp, user_id) "
        "VALUES (?, ?, 100, 50, 0.0123, ?, ?, ?)",
        [
            (ids[n // 100], n, MODELS[n % 3], stamp((n // 100) * SPACING + n % 100 + 0.5), f"user-{n // 100 % 10}")
            for n in range(0, messages, 10)
        ],
    )
    raw.executemany(
        "INSERT INTO compaction_log (session_id, timestamp, trigger, pre_tokens, summary, messages_compacted) "
        "VALUES (?, ?, 'auto', 1000, 'a summary', 10)",
        [(sid, stamp(i * SPACING + 50)) for i, sid in enumerate(ids)],
    )
    raw.commit()
    raw.close()


def _admin(base: URL):
    """An engine on the server's maintenance database (the named one need not exist)."""
    database = "postgres" if base.get_backend_name() == "postgresql" else "mysql"
    return create_engine(base.set(database=database), isolation_level="AUTOCOMMIT")


def fresh_server_database(base: URL, name: str) -> URL:
    admin = _admin(base)
    force = " WITH (FORCE)" if base.get_backend_name() == "postgresql" else ""
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return base.set(database=name)


def drop_server_database(base: URL, name: str) -> None:
    admin = _admin(base)
    force = " WITH (FORCE)" if base.get_backend_name() == "postgresql" else ""
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    admin.dispose()


# -- the floors (run in the child process) ---------------------------------------------------------

TABLES = {
    "session_metadata": (
        "id",
        "created_at",
        "last_message_at",
        "is_closed",
        "summary",
        "message_count",
        "channel",
        "channel_session_key",
        "title",
        "user_id",
        "is_read",
        "triggered_by",
        "is_archived",
    ),
    "session_messages": ("id", "session_id", "role", "content", "timestamp", "message_key"),
    "usage_stats": (
        "id",
        "session_id",
        "turn",
        "input_tokens",
        "output_tokens",
        "cache_read",
        "cache_write",
        "cost_usd",
        "model",
        "timestamp",
        "user_id",
        "usage_key",
    ),
    "compaction_log": ("id", "session_id", "timestamp", "trigger", "pre_tokens", "summary", "messages_compacted"),
    "tool_calls": ("message_id", "session_id", "role", "call_id", "tool_name", "timestamp", "is_error"),
}
TIMES = {"created_at", "last_message_at", "timestamp"}
FLAGS = {"is_closed", "is_read", "is_archived", "is_error"}


def _converters(columns: tuple[str, ...], mariadb: bool):
    def time_value(value):
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=None) if mariadb else moment

    return [time_value if c in TIMES else (bool if c in FLAGS else None) for c in columns]


def _rows(source: sqlite3.Connection, table: str, mariadb: bool):
    columns = TABLES[table]
    converters = _converters(columns, mariadb)
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}")
    while chunk := cursor.fetchmany(5000):
        yield [
            tuple(v if f is None or v is None else f(v) for f, v in zip(converters, row, strict=False)) for row in chunk
        ]


def _write_rows(url: URL, tables) -> None:
    """``tables``: (name, iterator of row chunks) in order, written with the bare driver."""
    from starpod_session._common.search_query import indexed_words

    if url.get_backend_name() == "postgresql":
        import psycopg

        with psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
        ) as connection:
            for table, chunks in tables:
                with (
                    connection.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({', '.join(TABLES[table])}) FROM STDIN") as copy,
                ):
                    for chunk in chunks:
                        for row in chunk:
                            copy.write_row(row)
                connection.commit()
            for table in ("session_messages", "usage_stats", "compaction_log"):
                connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            connection.commit()
    else:
        import pymysql

        connection = pymysql.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username,
            password=url.password or "",
            database=url.database,
            charset="utf8mb4",
        )
        with connection.cursor() as cursor:
            for table, chunks in tables:
                columns = TABLES[table]
                names = ", ".join(f"`{c}`" for c in columns)
                sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
                for chunk in chunks:
                    cursor.executemany(sql, chunk)
                    if table == "session_messages":
                        words = [(w, row[0], h) for row in chunk for w, h in indexed_words(row[3]).items()]
                        cursor.executemany(
                            "INSERT INTO session_message_words (word, message_id, hits) VALUES (%s, %s, %s)", words
                        )
                connection.commit()
        connection.close()


def floor_copy(source: Path, url: URL) -> None:
    mariadb = url.get_backend_name() in ("mysql", "mariadb")
    raw = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    raw.execute("BEGIN")
    _write_rows(url, ((table, _rows(raw, table, mariadb)) for table in TABLES))
    raw.close()


def _line_value(column: str, value):
    if value is None:
        return None
    if column in TIMES:
        return datetime.fromisoformat(value).isoformat()
    if column in FLAGS:
        return bool(value)
    return value


def floor_dump(source: Path, file: Path) -> None:
    raw = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    raw.execute("BEGIN")
    digest = hashlib.sha256()
    with open(file, "wb") as out:
        for table, columns in TABLES.items():
            cursor = raw.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}")
            while chunk := cursor.fetchmany(5000):
                for row in chunk:
                    line = (
                        json.dumps(
                            {"table": table, "row": {c: _line_value(c, v) for c, v in zip(columns, row, strict=False)}},
                            ensure_ascii=False,
                            separators=(",", ":"),
                        )
                        + "\n"
                    ).encode()
                    digest.update(line)
                    out.write(line)
        out.write((json.dumps({"sha256": digest.hexdigest()}) + "\n").encode())
    raw.close()


def floor_restore(file: Path, url: URL) -> None:
    mariadb = url.get_backend_name() in ("mysql", "mariadb")
    converters = {table: _converters(columns, mariadb) for table, columns in TABLES.items()}

    def chunks_of(table: str, lines):
        columns, convert = TABLES[table], converters[table]
        chunk = []
        for document in lines:
            row = document["row"]
            chunk.append(
                tuple(
                    v if f is None or v is None else f(v)
                    for f, v in ((f, row.get(c)) for f, c in zip(convert, columns, strict=False))
                )
            )
            if len(chunk) == 5000:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    with open(file, "rb") as stream:
        documents = [json.loads(line) for line in stream][:-1]  # (the floor may hold the file: it is its floor)
    grouped: dict[str, list] = {table: [] for table in TABLES}
    for document in documents:
        grouped[document["table"]].append(document)
    _write_rows(url, ((table, chunks_of(table, grouped[table])) for table in TABLES))


# -- measuring ----------------------------------------------------------------------------------------


def child(what: str, a: str, b: str) -> None:
    start = time.perf_counter()
    if what == "copy":
        from starpod_session import copy_database

        copy_database(a, b)
    elif what == "dump":
        from starpod_session import dump_database

        dump_database(a, b)
    elif what == "restore":
        from starpod_session import restore_database

        restore_database(a, b)
    elif what == "floor-copy":
        floor_copy(Path(a), make_url(b))
    elif what == "floor-dump":
        floor_dump(Path(a), Path(b))
    elif what == "floor-restore":
        floor_restore(Path(a), make_url(b))
    elapsed = time.perf_counter() - start
    peak = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    print(json.dumps({"seconds": elapsed, "peak_mib": peak / 1024}))


def measure(what: str, a: object, b: object) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", what, str(a), str(b)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{what} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepared_target(base: URL, name: str) -> URL:
    from starpod_session.backends.engine import create_storage_engine
    from starpod_session.storage.schema import upgrade_schema

    url = fresh_server_database(base, name)
    engine = create_storage_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument(
        "--url", action="append", default=[], help="a server to copy to (its database name is a prefix)"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    folder = Path(tempfile.mkdtemp(prefix="starpod-transfer-bench-"))
    source = folder / "source.db"
    build_source(source, args.messages)
    raw = sqlite3.connect(source)
    rows = sum(raw.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (*TABLES, "usage_daily"))
    raw.close()
    print(f"source: {args.messages:,} messages, {rows:,} rows in all, {source.stat().st_size / 2**20:.0f} MiB")
    results = []

    def row(name: str, ours: dict, floor: dict) -> None:
        ratio = ours["seconds"] / floor["seconds"]
        results.append(
            (name, rows / ours["seconds"], rows / floor["seconds"], ratio, ours["peak_mib"], floor["peak_mib"])
        )
        print(
            f"{name:<28} ours {rows / ours['seconds']:>9,.0f} rows/s  floor {rows / floor['seconds']:>9,.0f} rows/s  "
            f"{ratio:4.2f}x  peak RSS ours {ours['peak_mib']:.0f} MiB, floor {floor['peak_mib']:.0f} MiB",
            flush=True,
        )

    for _ in range(args.rounds):
        for raw_url in args.url:
            base = make_url(raw_url)
            backend = "postgresql" if base.get_backend_name() == "postgresql" else "mariadb"
            ours_db = fresh_server_database(base, f"{base.database}_ours")
            ours = measure("copy", source, ours_db.render_as_string(hide_password=False))
            floor_db = prepared_target(base, f"{base.database}_floor")
            floor = measure("floor-copy", source, floor_db.render_as_string(hide_password=False))
            row(f"copy sqlite -> {backend}", ours, floor)
            drop_server_database(base, ours_db.database)
            drop_server_database(base, floor_db.database)
        dump = folder / "dump.jsonl"
        ours = measure("dump", source, dump)
        floor = measure("floor-dump", source, folder / "floor.jsonl")
        row("dump sqlite -> file", ours, floor)
        for raw_url in args.url[:1]:
            base = make_url(raw_url)
            ours_db = fresh_server_database(base, f"{base.database}_ours")
            ours = measure("restore", dump, ours_db.render_as_string(hide_password=False))
            floor_db = prepared_target(base, f"{base.database}_floor")
            floor = measure("floor-restore", folder / "floor.jsonl", floor_db.render_as_string(hide_password=False))
            row(f"restore file -> {base.get_backend_name()}", ours, floor)
            drop_server_database(base, ours_db.database)
            drop_server_database(base, floor_db.database)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
