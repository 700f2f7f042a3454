"""``search_messages``: the first page of a two-word query; the floor replays the statement ours emitted."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from datasets import MESSAGE_COLUMNS, Target, load_dataset, load_words
from harness import CAPTURE, T0, Report, Scale, interleaved
from sqlalchemy.engine import URL

from starpod_session import SessionManager

#: Two-word queries of the search workload: "deploy" is in 1% of the messages,
#: "billing" in 1.2%, both in 0.2% (2,000 of a million messages to rank).
SEARCH_QUERIES = ("deploy billing", "billing deploy*")


def load_search_dataset(target: Target, rows: int) -> URL:
    """``rows`` messages of 8 to 30 words from a 20,000-word vocabulary (Zipf-like), over 10,000 sessions."""
    data = load_dataset(target, "search", sessions=min(10_000, rows), messages=0, usage=0, with_10k=False)
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
        batch.append(
            (
                data.sessions[n % len(data.sessions)],
                "user" if n % 2 else "assistant",
                " ".join(words),
                floor.stamp(moment),
            )
        )
        if len(batch) == 100_000:
            floor.load("session_messages", MESSAGE_COLUMNS, batch)
            batch = []
    if batch:
        floor.load("session_messages", MESSAGE_COLUMNS, batch)
    load_words(target, floor)
    floor.close()
    return data.url


def run(target: Target, scale: Scale, rows: int, report: Report) -> None:
    """search_messages' first page against the same SQL run through the bare driver."""
    started = time.perf_counter()
    url = load_search_dataset(target, rows)
    print(f"(loaded {rows:,} searchable messages in {time.perf_counter() - started:.0f} s)", flush=True)
    floor = target.floor(url)
    with SessionManager(url) as mgr:
        for query in SEARCH_QUERIES:
            with CAPTURE() as statements:
                hits = mgr.search_messages(query, limit=20)
            # Both words are in one message of 500: fewer than 20 hits below 10,000 (the smoke scale).
            assert len(hits) == min(20, -(-rows // 500)) and all("«" in hit.snippet for hit in hits)
            ours, theirs = interleaved(
                scale.search_calls,
                lambda _n, query=query: mgr.search_messages(query, limit=20),
                lambda _n: floor.replay(statements),
                warmup=3,
            )
            report.compare(f"search {query!r} of {rows:,} msgs", ours, theirs, limit=2.0)
            report.check(
                f"search {query!r}: first page {ours.median * 1000:.1f} ms < 50 ms at {rows:,} messages",
                ours.median < 0.05,
            )
    floor.close()
