"""Throughput under threads: aggregate calls/s of one shared SessionManager against one raw connection per thread.

Servers: 16 threads, each in a loop of ``open_session`` (its own key, which has an
open session: a find), ``save_message`` x2 (user, assistant) and ``record_usage``,
four transactions per round. The floor runs 16 threads with a bare driver
connection each (``floors.PostgresFloor`` / ``MariaFloor``) doing the same
statements in the same transactions. Ours and the floor alternate in timed
rounds on one database; the figure is the total calls/s of each over all rounds.

SQLite: 4 reader threads (``get_messages`` of a 100-message session and
``list_sessions(20)`` in turn) alongside one writer (``save_message``) on a WAL
file, ours (one manager) against five ``sqlite3`` connections: reads/s and writes/s.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from datasets import Target, load_dataset
from harness import Report

from starpod_session import Channel, SessionManager, UsageRecord
from workloads.get_messages import floor_get_messages
from workloads.list_sessions import floor_list_sessions
from workloads.record_usage import floor_record_usage
from workloads.save_message import floor_save_message
from workloads.session_calls import floor_open_session

THREADS = 16
READERS = 4
#: Seconds per timed round, and rounds per side (ours and the floor alternate).
ROUND_SECONDS = float(os.environ.get("STARPOD_BENCH_ROUND_SECONDS", "4"))
ROUNDS = int(os.environ.get("STARPOD_BENCH_ROUNDS", "3"))
TARGET = 0.8

RECORD = UsageRecord(input_tokens=1200, output_tokens=300, cache_read=4000, cost_usd=0.0123, model="claude-sonnet-4-5")
USER_TEXT = "Please summarise the attached meeting notes and list the action items. " * 2
REPLY_TEXT = "Here are the action items: " + "do the thing; " * 12


def timed_round(workers: list[Callable[[threading.Event], int]], seconds: float) -> tuple[list[int], float]:
    """Run every worker in its own thread until ``seconds`` pass; returns each one's count and the elapsed time."""
    start, stop = threading.Barrier(len(workers) + 1), threading.Event()
    counts = [0] * len(workers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            counts[index] = workers[index](stop)
        except BaseException as error:  # reported after the round
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(workers))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return counts, elapsed


def loop(body: Callable[[int], int]) -> Callable[[threading.Event], int]:
    """A worker calling ``body(round)`` until told to stop; counts the calls ``body`` reports."""

    def worker(stop: threading.Event) -> int:
        calls = n = 0
        while not stop.is_set():
            calls += body(n)
            n += 1
        return calls

    return worker


def alternate(sides: dict[str, Callable[[], list[Callable[[threading.Event], int]]]]) -> dict[str, list[float]]:
    """Per side, the calls/s of each round; sides alternate round by round so drift hits all alike."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, make in sides.items():
            counts, elapsed = timed_round(make(), ROUND_SECONDS)
            rates[name].append(sum(counts) / elapsed)
    return rates


def servers(target: Target, report: Report) -> None:
    data = load_dataset(target, "tput", sessions=10, messages=0, usage=0, with_10k=False)
    floors = [target.floor(data.url) for _ in range(THREADS)]
    with SessionManager(data.url) as mgr:
        ours_ids = [mgr.open_session(Channel.MAIN, f"ours-{n}").session_id for n in range(THREADS)]
        for n in range(THREADS):
            mgr.open_session(Channel.MAIN, f"floor-{n}")

        def ours_worker(n: int) -> Callable[[threading.Event], int]:
            def body(turn: int) -> int:
                session_id = mgr.open_session(Channel.MAIN, f"ours-{n}").session_id
                mgr.save_message(session_id, "user", USER_TEXT)
                mgr.save_message(session_id, "assistant", REPLY_TEXT)
                mgr.record_usage(session_id, RECORD, turn)
                return 4

            return loop(body)

        def floor_worker(n: int) -> Callable[[threading.Event], int]:
            floor = floors[n]

            def body(turn: int) -> int:
                session_id = floor_open_session(floor, "main", f"floor-{n}")[0]  # the key's open session
                floor_save_message(floor, session_id, "user", USER_TEXT)
                floor_save_message(floor, session_id, "assistant", REPLY_TEXT)
                floor_record_usage(floor, session_id, RECORD, turn)
                return 4

            return loop(body)

        # Warm both sides (connections opened, statements compiled) before timing.
        timed_round([ours_worker(n) for n in range(THREADS)], 0.5)
        timed_round([floor_worker(n) for n in range(THREADS)], 0.5)
        rates = alternate(
            {
                "ours": lambda: [ours_worker(n) for n in range(THREADS)],
                "floor": lambda: [floor_worker(n) for n in range(THREADS)],
            }
        )
        assert all(mgr.get_session(sid) is not None for sid in ours_ids)
    for floor in floors:
        floor.close()
    ours, floor_rate = sum(rates["ours"]) / ROUNDS, sum(rates["floor"]) / ROUNDS
    ratio = ours / floor_rate
    line = (
        f"{THREADS} threads: open+save x2+usage   ours {ours:>7.0f} calls/s   floor {floor_rate:>7.0f} calls/s"
        f"   {ratio:.2f}x  (rounds ours {_rounded(rates['ours'])}, floor {_rounded(rates['floor'])})"
    )
    print(line, flush=True)
    report.lines.append(line)
    report.check(f"throughput, {THREADS} threads: ours/floor calls/s {ratio:.2f}x >= {TARGET}x", ratio >= TARGET)


def sqlite(target: Target, report: Report) -> None:
    data = load_dataset(target, "tput", sessions=1000, messages=0, usage=0, with_10k=False)
    floors = [target.floor(data.url) for _ in range(READERS + 1)]
    with SessionManager(data.url) as mgr:
        ours_write_to = mgr.create_session(Channel.MAIN, "writer-ours")
        floor_write_to = mgr.create_session(Channel.MAIN, "writer-floor")

        def reads(get: Callable[[], Any], listing: Callable[[], Any]) -> Callable[[int], int]:
            def body(n: int) -> int:
                if n % 2:
                    listing()
                else:
                    get()
                return 1

            return body

        def ours() -> list[Callable[[threading.Event], int]]:
            reader = loop(reads(lambda: mgr.get_messages(data.with_100), lambda: mgr.list_sessions(20)))
            writer = loop(lambda n: bool(mgr.save_message(ours_write_to, "user" if n % 2 else "assistant", USER_TEXT)))
            return [writer] + [reader] * READERS

        def floor() -> list[Callable[[threading.Event], int]]:
            readers = [
                loop(reads(lambda f=f: floor_get_messages(f, data.with_100), lambda f=f: floor_list_sessions(f, 20)))
                for f in floors[1:]
            ]
            writer = loop(
                lambda n: bool(
                    floor_save_message(floors[0], floor_write_to, "user" if n % 2 else "assistant", USER_TEXT)
                )
            )
            return [writer, *readers]

        timed_round(ours(), 0.5)
        timed_round(floor(), 0.5)
        per_side: dict[str, tuple[list[float], list[float]]] = {"ours": ([], []), "floor": ([], [])}
        for _ in range(ROUNDS):
            for name, make in (("ours", ours), ("floor", floor)):
                counts, elapsed = timed_round(make(), ROUND_SECONDS)
                per_side[name][0].append(sum(counts[1:]) / elapsed)
                per_side[name][1].append(counts[0] / elapsed)
    for f in floors:
        f.close()
    (our_reads, our_writes), (floor_reads, floor_writes) = (
        (sum(r) / ROUNDS, sum(w) / ROUNDS) for r, w in per_side.values()
    )
    line = (
        f"WAL, {READERS} readers + 1 writer: reads/s ours {our_reads:.0f} floor {floor_reads:.0f} "
        f"({our_reads / floor_reads:.2f}x); writes/s ours {our_writes:.0f} floor {floor_writes:.0f} "
        f"({our_writes / floor_writes:.2f}x)"
    )
    print(line, flush=True)
    report.lines.append(line)


def run(target: Target, report: Report) -> None:
    """The throughput workload of ``target``'s backend."""
    print("\nthroughput (aggregate over threads, ours vs floor interleaved by rounds)", flush=True)
    if target.backend == "sqlite":
        sqlite(target, report)
    else:
        servers(target, report)


def _rounded(rates: list[float]) -> str:
    return "/".join(f"{rate:.0f}" for rate in rates)
