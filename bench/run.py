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
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from starpod_session import Channel, SessionManager

from datasets import Target, load_dataset
from floors import Floor
from harness import FULL, HEADER, QUICK, Report, Scale, machine
from workloads import cost_overview, get_messages, list_sessions, record_usage, resolve_touch, save_message, scaling, search
from workloads import memory, throughput


def per_call_workloads(target: Target, scale: Scale, report: Report) -> None:
    """save_message, resolve+touch, get_messages and record_usage on one database."""
    # The 100- and 10,000-message sessions are bulk-loaded; the rest is created through the API.
    data = load_dataset(target, "calls", sessions=40, messages=0, usage=0, with_10k=True)
    floor: Floor = target.floor(data.url)
    with SessionManager(data.url) as mgr:
        ours_ids = [mgr.create_session(Channel.MAIN, f"save-ours-{n}") for n in range(scale.save_sessions)]
        floor_ids = [mgr.create_session(Channel.MAIN, f"save-floor-{n}") for n in range(scale.save_sessions)]
        save_message.measure(mgr, floor, ours_ids, floor_ids, scale, report)
        resolve_touch.measure(mgr, floor, scale, report)
        get_messages.measure(mgr, floor, data, scale, report)
        record_usage.measure(mgr, floor, ours_ids[0], floor_ids[0], scale, report)
    floor.close()


def big_workloads(target: Target, scale: Scale, rows: int, report: Report) -> None:
    """cost_overview on the big dataset, then our scaling from the small dataset to the big one."""
    started = time.perf_counter()
    small = load_dataset(target, "1k", sessions=scale.small_rows, messages=scale.small_rows, usage=scale.small_rows, with_10k=False)
    big = load_dataset(target, "big", sessions=rows, messages=rows, usage=rows, with_10k=True)
    print(f"(loaded {scale.small_rows:,} and {rows:,} rows per table in {time.perf_counter() - started:.0f} s)", flush=True)
    cost_overview.measure(target, big, scale, rows, report)
    scaling.measure(small, big, scale, rows, report)


def run_backend(target: Target, scale: Scale, rows: int, *, only_search: bool = False) -> Report:
    report = Report(target.backend)
    label = target.backend if target.base is None else target.base.render_as_string(hide_password=True)
    print(f"\n== {label} ==  (times in ms; ratio = median ours / median floor)", flush=True)
    print(HEADER, flush=True)
    try:
        if not only_search:
            per_call_workloads(target, scale, report)
            list_sessions.run(target, scale, report)
            throughput.run(target, report)
            memory.run(target, report)
            big_workloads(target, scale, rows, report)
        search.run(target, scale, rows, report)
    finally:
        target.cleanup()
    return report


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
