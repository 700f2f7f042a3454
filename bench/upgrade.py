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


def child(path: str, with_progress: bool) -> None:
    from starpod_session.backends.engine import create_storage_engine, to_url
    from starpod_session.storage.schema import upgrade_schema

    calls = 0

    def progress(_event: object) -> None:
        nonlocal calls
        calls += 1

    engine = create_storage_engine(to_url(path), statement_timeout=None)
    start = time.perf_counter()
    if with_progress:
        upgrade_schema(engine, progress=progress)  # type: ignore[call-arg]
    else:
        upgrade_schema(engine)
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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.progress)
        return
    folder = Path(tempfile.mkdtemp(prefix="starpod-upgrade-bench-"))
    source = args.source or folder / "baseline.db"
    if args.source is None:
        build_source(source, args.messages)
    print(f"source: {source} ({source.stat().st_size / 2**20:.0f} MiB)", flush=True)
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
