#!/usr/bin/env python3
"""Benchmark: SessionManager against the raw-SQL floor, in one process and one run.

    python3 bench/run.py                     # SQLite, full scale (a few minutes)
    python3 bench/run.py --quick             # SQLite, small scale (100,000-row big datasets)
    python3 bench/run.py --url postgresql+psycopg://postgres@127.0.0.1:5432/starpod_bench \\
                         --url mysql+pymysql://root@127.0.0.1:3306/starpod_bench --server-rows 200000
    python3 bench/run.py --only calls,sessions   # some workload groups (see --help)
    python3 bench/run.py --smoke --url ...    # CI: every workload, tiny scale, no target checked

Every workload runs on our ``SessionManager`` and, interleaved in blocks on the
same database, through the bare driver (``sqlite3``, ``psycopg``, ``pymysql``)
doing the same logical work per call with the same SQL and connection settings:

* SQLite floor connections run ``busy_timeout=5000``, ``foreign_keys=ON``, WAL,
  ``synchronous=NORMAL`` and an 8 MiB page cache (as ours); writes start with ``BEGIN IMMEDIATE``, reads with
  ``BEGIN``, every call commits, exactly as ours.
* Server floors write at READ COMMITTED and read at REPEATABLE READ, as ours.
  (Neither pings its connection before use: ours replaces a connection found
  dead before a commit and runs the call again.)

What each floor does per call (one transaction each):

* ``save_message``: ``UPDATE ... SET last_message_at = now`` (and, for a
  ``user`` message with text, ``title = COALESCE(title, ?)``, cut to 100 UTF-8
  bytes) ``WHERE id = ?``, one row changed or ``SessionNotFound``; ``INSERT``
  the message with the same timestamp and read back its id.
* ``save_message`` against the FTS5 floor (group ``append``, SQLite only): ours
  on a fresh file against a schema of its own on another, the least a searchable
  append needs (a session row updated, a message row, an external-content FTS5
  table kept by a trigger); see ``workloads/append_floor.py``. Target 1.5x.
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
* ``open_session`` on a new key: ``SELECT`` the key's open session (none),
  ``INSERT`` the new one; on an existing key: that ``SELECT`` and the gap test,
  nothing written (``open_session`` does not touch); on a stale key: the
  ``SELECT``, the gap test, ``UPDATE ... SET is_closed, summary WHERE id = ? AND
  is_closed = false``, the ``INSERT``. ``create_session``: the ``SELECT`` and the
  ``INSERT``. ``close_session``, ``mark_read``, ``archive_session`` (archive and
  unarchive alternating): one ``UPDATE ... WHERE id = ?`` matching one row or
  ``SessionNotFound``. ``record_compaction``: ``SELECT EXISTS`` of the session,
  ``INSERT`` the log row. All in one write transaction each; details in
  ``workloads/session_calls.py``.

Every per-call workload's target is ours <= 2x the floor (``report.compare(...,
limit=2.0)``); the cost overview's is 1.5x, the search's 2x and 50 ms.

Scaling compares our own per-call latency (save_message, resolve_session,
get_messages of a 100-message session) on a database of 1,000 rows per table
with one of 1,000,000 rows per table, interleaved in blocks.

Big datasets are bulk-loaded with the raw driver (``executemany`` in one
transaction; ``COPY`` on PostgreSQL) into a database our manager created, so
the schema is ours; SQLite timestamps are written in the exact stored format.
Server databases are scratch databases: the script creates ``<db>_calls``,
``<db>_list``, ``<db>_1k``, ``<db>_big`` and ``<db>_search`` beside the one named
in the URL and drops their tables when it is done.

``--smoke`` (for CI) runs every workload on tiny datasets (1,000 rows per table,
a 500-message session, 10 calls a workload) and names its server databases
``<db>_<pid>_...``, dropping the databases at the end, so that runs in parallel
do not meet; with several backends it runs one process per backend, all at
once. It prints the same report and verdicts but checks none.

Exit status: 0 when every target passes (always, with ``--smoke``, unless
something raised), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from datasets import Target, load_dataset
from floors import Floor
from harness import FULL, HEADER, QUICK, SMOKE, Report, Scale, machine
from sqlalchemy.engine import make_url
from workloads import (
    adk,
    append_floor,
    cost_overview,
    get_messages,
    list_sessions,
    memory,
    openai_agents,
    record_usage,
    resolve_touch,
    save_message,
    scaling,
    search,
    session_calls,
    throughput,
)

from starpod_session import Channel, SessionManager


def per_call_workloads(target: Target, scale: Scale, report: Report, groups: frozenset[str]) -> None:
    """On one database: save_message, resolve+touch, get_messages and record_usage ("calls"), then
    open/create/close_session, mark_read, archive_session and record_compaction ("sessions")."""
    # The 100- and 10,000-message sessions are bulk-loaded; the rest is created through the API.
    data = load_dataset(
        target, "calls", sessions=40, messages=0, usage=0, with_10k=True, long_messages=scale.long_session
    )
    floor: Floor = target.floor(data.url)
    with SessionManager(data.url) as mgr:
        if "calls" in groups:
            ours_ids = [mgr.create_session(Channel.MAIN, f"save-ours-{n}") for n in range(scale.save_sessions)]
            floor_ids = [mgr.create_session(Channel.MAIN, f"save-floor-{n}") for n in range(scale.save_sessions)]
            save_message.measure(mgr, floor, ours_ids, floor_ids, scale, report)
            resolve_touch.measure(mgr, floor, scale, report)
            get_messages.measure(mgr, floor, data, scale, report)
            record_usage.measure(mgr, floor, ours_ids[0], floor_ids[0], scale, report)
        if "sessions" in groups:
            session_calls.measure(mgr, floor, scale, report)
    floor.close()


def big_workloads(target: Target, scale: Scale, rows: int, report: Report) -> None:
    """cost_overview on the big dataset, then our scaling from the small dataset to the big one."""
    started = time.perf_counter()
    small = load_dataset(
        target, "1k", sessions=scale.small_rows, messages=scale.small_rows, usage=scale.small_rows, with_10k=False
    )
    big = load_dataset(
        target, "big", sessions=rows, messages=rows, usage=rows, with_10k=True, long_messages=scale.long_session
    )
    print(
        f"(loaded {scale.small_rows:,} and {rows:,} rows per table in {time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    cost_overview.measure(target, big, scale, rows, report)
    scaling.measure(small, big, scale, rows, report)


#: The workload groups, in the order they run; ``--only`` selects some of them.
GROUPS = ("calls", "append", "sessions", "list", "throughput", "memory", "big", "search", "adk", "openai_agents")


def run_backend(target: Target, scale: Scale, rows: int, groups: frozenset[str]) -> Report:
    report = Report(target.backend)
    label = target.backend if target.base is None else target.base.render_as_string(hide_password=True)
    print(f"\n== {label} ==  (times in ms; ratio = median ours / median floor)", flush=True)
    print(HEADER, flush=True)
    steps: tuple[tuple[tuple[str, ...], Callable[[], None]], ...] = (
        (("calls", "sessions"), lambda: per_call_workloads(target, scale, report, groups)),
        (("append",), lambda: append_floor.run(target, scale, report)),
        (("list",), lambda: list_sessions.run(target, scale, report)),
        (("throughput",), lambda: throughput.run(target, report)),
        (("memory",), lambda: memory.run(target, report)),
        (("big",), lambda: big_workloads(target, scale, rows, report)),
        (("search",), lambda: search.run(target, scale, rows, report)),
        (("adk",), lambda: adk.run(target, scale, report)),
        (("openai_agents",), lambda: openai_agents.run(target, scale, report)),
    )
    began = time.perf_counter()
    try:
        for names, step in steps:
            chosen = [name for name in names if name in groups]
            if chosen:
                started = time.perf_counter()
                step()
                print(f"({' and '.join(chosen)}: {time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        target.cleanup()
    print(f"({target.backend}: {time.perf_counter() - began:.0f} s in all)", flush=True)
    return report


def _groups(value: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = names - set(GROUPS)
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected workload groups among {', '.join(GROUPS)}, got {value!r}")
    return names


def smoke_in_parallel(backends: list[str | None], groups: frozenset[str]) -> int:
    """``--smoke`` on each backend in a process of its own, all at once (timings mean nothing
    in a smoke run, and most of its time is the servers' DDL); their reports in order."""
    only = ["--only", ",".join(name for name in GROUPS if name in groups)]
    with tempfile.TemporaryDirectory(prefix="starpod-bench-smoke-") as folder, contextlib.ExitStack() as files:
        runs = []
        for n, url in enumerate(backends):
            output = files.enter_context(open(Path(folder) / f"{n}.txt", "w+"))
            where = [] if url is None else ["--no-sqlite", "--url", url]
            command = [sys.executable, __file__, "--smoke", *only, *where]
            runs.append((subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), output))
        status = 0
        for process, output in runs:
            code = process.wait()
            output.seek(0)
            print(output.read(), end="", flush=True)
            status = status or code
    print(f"\nsmoke run {'complete' if status == 0 else 'FAILED'} on {len(backends)} backends")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", action="append", default=[], help="a PostgreSQL or MariaDB URL of a scratch database (repeatable)"
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small scale (100,000-row big datasets)")
    sizes.add_argument(
        "--smoke",
        action="store_true",
        help="CI: every workload at a tiny scale on scratch databases of its own (dropped afterwards); "
        "exits 0 unless something raises, whatever the ratios",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="run the servers only")
    parser.add_argument(
        "--server-rows",
        type=int,
        default=None,
        help="rows per table of the big dataset on servers (default: as on SQLite)",
    )
    parser.add_argument(
        "--only",
        type=_groups,
        default=frozenset(GROUPS),
        metavar="GROUP[,GROUP]",
        help=f"run only these workload groups ({', '.join(GROUPS)})",
    )
    parser.add_argument("--only-search", action="store_true", help="the same as --only search")
    args = parser.parse_args(argv)
    scale = SMOKE if args.smoke else QUICK if args.quick else FULL
    groups = frozenset({"search"}) if args.only_search else args.only
    backends = ([] if args.no_sqlite else [None]) + args.url
    if args.smoke and len(backends) > 1:
        return smoke_in_parallel(backends, groups)
    if args.smoke:  # the throughput and memory workloads have no Scale of their own
        throughput.ROUND_SECONDS, throughput.ROUNDS, memory.MESSAGES = 0.2, 1, 2_000
    print(machine())
    workdir = Path(tempfile.mkdtemp(prefix="starpod-bench-"))
    reports = []
    try:
        if not args.no_sqlite:
            reports.append(run_backend(Target(None, workdir), scale, scale.big_rows, groups))
        for raw in args.url:
            url = make_url(raw)
            if args.smoke:  # runs in parallel (CI) must not share scratch databases
                url = url.set(database=f"{url.database}_{os.getpid()}")
            rows = args.server_rows or scale.big_rows
            reports.append(run_backend(Target(url, workdir, drop_databases=args.smoke), scale, rows, groups))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n== targets ==" + ("  (smoke run: not checked)" if args.smoke else ""))
    failed = 0
    for report in reports:
        for what, passed in report.verdicts:
            failed += not passed
            print(f"{'PASS' if passed else 'FAIL'}  {report.backend:<10} {what}")
    if args.smoke:
        print(f"\nsmoke run complete: {sum(len(r.verdicts) for r in reports)} targets measured, none checked")
        return 0
    print(f"\n{'all targets pass' if not failed else f'{failed} target(s) FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
