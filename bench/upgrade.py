#!/usr/bin/env python3
"""Benchmark: ``upgrade_schema`` of a large Rust-era-like SQLite file, from the baseline to head.

    flock /tmp/bench.lock python3 bench/upgrade.py --messages 1000000 --rounds 3

The file is built once at the baseline revision (the Rust crate's schema, rows
bulk loaded through sqlite3): ``--messages`` messages of about 100 characters in
sessions of 100, one in ten a ``tool_use`` and one in twenty a ``tool_result`` (a
third of them errors), one usage row per 10 messages. Each round copies it and
upgrades the copy in a fresh process, so the migrations that backfill (0007 the
tool calls, 0008 the search index, 0009 the daily usage rollup) run over every row;
``--progress`` passes a progress callback that only counts its calls. Reported:
seconds per upgrade and the peak RSS of the process doing it.

``--search-index`` times migration 0008 alone on SQLite instead (the file upgraded
to 0007 first, untimed): its backfill in batches of 50,000 messages against the
same objects built with one FTS5 ``rebuild`` through sqlite3, the two alternating
round by round. Target: the batches within ~10% of the rebuild.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transfer import SPACING, WORDS, insert_sessions, stamp  # bench/transfer.py, beside this file

MODELS = ("claude-sonnet", "claude-haiku", None)


def build_source(path: Path, messages: int) -> None:
    from sqlalchemy import create_engine

    from starpod_session.storage.schema import BASELINE_REVISION, upgrade_schema

    engine = create_engine(f"sqlite:///{path}")
    upgrade_schema(engine, BASELINE_REVISION)
    engine.dispose()
    rng = random.Random(7)
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA synchronous = OFF")
    ids = insert_sessions(raw, messages, rng)

    def message(n: int) -> tuple[str, str, str, str]:
        moment = stamp((n // 100) * SPACING + n % 100 + 0.123456)
        if n % 10 == 3:
            role, content = "tool_use", json.dumps({"type": "tool_use", "id": f"tu_{n}", "name": f"tool{n % 7}"})
        elif n % 20 == 4:
            role = "tool_result"
            content = json.dumps({"type": "tool_result", "tool_use_id": f"tu_{n - 1}", "is_error": n % 60 == 4})
        else:
            role, content = ("user" if n % 2 else "assistant"), " ".join(rng.choice(WORDS) for _ in range(18))
        return ids[n // 100], role, content, moment

    for start in range(0, messages, 50_000):
        raw.executemany(
            "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?,?,?,?)",
            [message(n) for n in range(start, min(messages, start + 50_000))],
        )
    raw.executemany(
        "INSERT INTO usage_stats (session_id, turn, input_tokens, output_tokens, cost_usd, model, timestamp, user_id) "
        "VALUES (?, ?, 100, 50, ?, ?, ?, ?)",
        [
            (ids[n // 100], n, rng.random() / 7, MODELS[n % 3], stamp(n // 100 * SPACING + n % 100 + 0.5), f"u{n % 9}")
            for n in range(0, messages, 10)
        ],
    )
    raw.commit()
    raw.close()


def rebuild_child(path: str) -> None:
    """Migration 0008's SQLite objects with one FTS5 ``rebuild`` as the backfill, in one transaction."""
    search = _migration("0008")
    raw = sqlite3.connect(path, isolation_level=None)
    start = time.perf_counter()
    raw.execute("BEGIN")
    for statement in search.SQLITE_UPGRADE:
        raw.execute(statement)
    raw.execute(f"INSERT INTO {search.FTS_TABLE}({search.FTS_TABLE}) VALUES ('rebuild')")
    raw.execute("UPDATE alembic_version SET version_num = '0008'")
    raw.execute("COMMIT")
    elapsed = time.perf_counter() - start
    raw.close()
    print(json.dumps({"seconds": elapsed}))


def _migration(revision: str):  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory

    from starpod_session.storage.schema import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_revision(revision).module


def search_index_rounds(source: Path, folder: Path, rounds: int) -> None:
    """Ours (``upgrade_schema(engine, "0008")``) and the rebuild, alternating, each on a fresh copy."""
    from starpod_session.backends.engine import create_storage_engine, to_url
    from starpod_session.storage.schema import upgrade_schema

    before = folder / "at-0007.db"
    shutil.copyfile(source, before)
    engine = create_storage_engine(to_url(before), statement_timeout=None)
    upgrade_schema(engine, "0007")
    engine.dispose()
    times: dict[str, list[float]] = {"batches": [], "rebuild": []}
    for _ in range(rounds):
        for name, flag in (("batches", "--child"), ("rebuild", "--rebuild-child")):
            copy = folder / "upgraded.db"
            shutil.copyfile(before, copy)
            command = [sys.executable, __file__, flag, str(copy), "--revision", "0008"]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{name} failed:\n{out.stderr}")
            seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            times[name].append(seconds)
            print(f"0008 {name}: {seconds:.2f} s", flush=True)
            copy.unlink()
    ours, floor = min(times["batches"]), min(times["rebuild"])
    print(f"0008 best of {rounds}: batches {ours:.2f} s, rebuild {floor:.2f} s, ratio {ours / floor:.3f}")


def child(path: str, with_progress: bool, revision: str = "head") -> None:
    from starpod_session.backends.engine import create_storage_engine, to_url
    from starpod_session.storage.schema import upgrade_schema

    calls = 0

    def progress(_event: object) -> None:
        nonlocal calls
        calls += 1

    engine = create_storage_engine(to_url(path), statement_timeout=None)
    start = time.perf_counter()
    if with_progress:
        upgrade_schema(engine, revision, progress=progress)
    else:
        upgrade_schema(engine, revision)
    elapsed = time.perf_counter() - start
    engine.dispose()
    peak = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    print(json.dumps({"seconds": elapsed, "peak_mib": peak / 1024, "calls": calls}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", type=Path, help="reuse this baseline file instead of building one")
    parser.add_argument("--progress", action="store_true", help="pass a progress callback (counts its calls)")
    parser.add_argument("--search-index", action="store_true", help="time migration 0008 against one rebuild")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rebuild-child", help=argparse.SUPPRESS)
    parser.add_argument("--revision", default="head", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.progress, args.revision)
        return
    if args.rebuild_child:
        rebuild_child(args.rebuild_child)
        return
    folder = Path(tempfile.mkdtemp(prefix="starpod-upgrade-bench-"))
    source = args.source or folder / "baseline.db"
    if args.source is None:
        build_source(source, args.messages)
    print(f"source: {source} ({source.stat().st_size / 2**20:.0f} MiB)", flush=True)
    if args.search_index:
        search_index_rounds(source, folder, args.rounds)
        if args.source is None:
            shutil.rmtree(folder)
        return
    for _ in range(args.rounds):
        copy = folder / "upgraded.db"
        shutil.copyfile(source, copy)
        command = [sys.executable, __file__, "--child", str(copy), *(["--progress"] if args.progress else [])]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"upgrade failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"upgrade to head: {result['seconds']:.2f} s, peak RSS {result['peak_mib']:.0f} MiB, "
            f"{result['calls']} progress calls",
            flush=True,
        )
        copy.unlink()
    if args.source is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
