"""Scaling: our own per-call latency at 1,000 vs 1,000,000 rows per table (save, resolve, get_messages).

Latency at a size, not the cache state the previous workload left: ``resolve_session``
looks up 1,000 keys at random, so each side looks every key up once before the timed
calls (the harness's three warm-up calls warm one key). Without it a third of the
timed look-ups were a key's first, reading its index pages from the file (SQLite)
or into a buffer pool the big dataset's loading had filled (MariaDB: 1.17-1.36x
between runs).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from datasets import Dataset
from harness import Report, Scale, interleaved, ms

from starpod_session import Channel, SessionManager


def measure(small: Dataset, big: Dataset, scale: Scale, rows: int, report: Report) -> None:
    print(f"\nscaling (ours only): median per call at {scale.small_rows:,} vs {rows:,} rows per table", flush=True)
    with SessionManager(small.url) as at_small, SessionManager(big.url) as at_big:
        pairs = ((at_small, small), (at_big, big))
        rngs = [random.Random(1), random.Random(1)]

        def saver(mgr: SessionManager, data: Dataset, rng: random.Random) -> Callable[[int], object]:
            targets = data.sessions[1:] if len(data.sessions) < 1000 else data.sessions[1:1000]
            return lambda n: mgr.save_message(
                targets[rng.randrange(len(targets))], "user" if n % 2 else "assistant", "ok " * 50
            )

        def resolver(mgr: SessionManager, data: Dataset, rng: random.Random) -> Callable[[int], object]:
            keys = data.main_keys[:1000]
            for key in keys:  # reads only: no open session of (main, key, "admin")
                mgr.resolve_session(Channel.MAIN, key)
            return lambda _n: mgr.resolve_session(Channel.MAIN, keys[rng.randrange(len(keys))])

        def getter(mgr: SessionManager, data: Dataset, _rng: random.Random) -> Callable[[int], object]:
            return lambda _n: mgr.get_messages(data.with_100)

        for label, make in (("save_message", saver), ("resolve_session", resolver), ("get_messages (100)", getter)):
            at_1k, at_big = interleaved(
                scale.scaling_calls, *(make(m, d, r) for (m, d), r in zip(pairs, rngs, strict=True))
            )
            ratio = at_big.median / at_1k.median
            line = (
                f"{label:<34} {ms(at_1k.median):>9} ms at {scale.small_rows:,}   {ms(at_big.median):>9} ms at {rows:,}"
                f"   {ratio:.2f}x"
            )
            print(line, flush=True)
            report.lines.append(line)
            report.check(
                f"{label}: latency at {rows:,} / at {scale.small_rows:,} rows = {ratio:.2f}x <= 1.3x", ratio <= 1.3
            )
