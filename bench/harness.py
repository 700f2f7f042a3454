"""What every workload shares: the scale, interleaved timing, the report and its targets, statement capture."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import sqlite3
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

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
    session_calls: int = 2000
    long_session: int = 10_000  # messages of the long session get_messages reads


FULL = Scale()
QUICK = Scale(5, 100, 300, 300, 5, 500, 2, 10_000, 300, 1_000, 100_000, 300, 50, 300)
#: Every workload once over, on datasets small enough for CI; its timings mean nothing.
SMOKE = Scale(2, 5, 10, 10, 2, 10, 1, 500, 10, 100, 1_000, 10, 3, 10, 500)

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
        for side, timing in zip(sides, timings, strict=True):
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
            f"{workload:<34} {ms(ours.median):>9} {ms(ours.p95):>9} {ours.per_second:>9.0f}"
            f" {ms(floor.median):>9} {ms(floor.p95):>9} {floor.per_second:>9.0f} {ratio:>6.2f}x"
        )
        self.check(f"{workload}: ours/floor {ratio:.2f}x <= {limit}x", ratio <= limit)
        print(self.lines[-1], flush=True)

    def check(self, what: str, passed: bool) -> None:
        self.verdicts.append((what, passed))


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects alive now out of the collector's sight while timing: a full collection inside a timed
    call then walks what the calls themselves made, not the whole benchmark process (the other stores and
    their data), which lands on whichever side crosses the collector's threshold. Every side timed inside
    is timed under the same collector."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


HEADER = (
    f"{'workload':<34} {'ours med':>9} {'ours p95':>9} {'ours/s':>9}"
    f" {'floor med':>9} {'floor p95':>9} {'floor/s':>9} {'ratio':>7}"
)


class Capture:
    """The statements every engine sends to its driver while capturing.

    The hook is listened to only while capturing: a listener left on ``Engine``
    would run on every statement of every timed call and add its cost to ours.
    """

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def _hook(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "SET ", "SELECT 1", "PRAGMA")):
            self.statements.append((statement, parameters))

    @contextmanager
    def __call__(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements = []
        event.listen(Engine, "before_cursor_execute", self._hook)
        try:
            yield self.statements
        finally:
            event.remove(Engine, "before_cursor_execute", self._hook)


CAPTURE = Capture()


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}"
    )


def bare_thread_hop(work: Callable[[int], object] | None = None) -> Callable[[int], Awaitable[object]]:
    """The least a hop to a waiting thread and back costs in asyncio: wake the thread (a lock), run
    ``work(n)`` there (nothing by default), settle the loop's future from it (``call_soon_threadsafe``).
    The thread (a daemon) serves every hop of the returned function."""
    wake = threading.Lock()
    wake.acquire()
    handed: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def serve() -> None:
        while True:
            wake.acquire()
            n, loop, future = handed.pop()
            try:
                if work is not None:
                    work(n)
            except BaseException as error:  # the awaiting side raises it
                loop.call_soon_threadsafe(future.set_exception, error)
            else:
                loop.call_soon_threadsafe(future.set_result, None)

    threading.Thread(target=serve, name="bare-hop", daemon=True).start()

    async def hop(n: int) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        handed.append((n, loop, future))
        wake.release()
        await future

    return hop
