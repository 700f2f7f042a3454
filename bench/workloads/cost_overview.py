"""``cost_overview`` (whole range, the last 30 days, and a range whose bounds fall within days):
the floor replays the very statements ours emitted."""

from __future__ import annotations

from datetime import timedelta

from datasets import Dataset, Target
from harness import CAPTURE, T0, Report, Scale, interleaved

from starpod_session import SessionManager


def measure(target: Target, big: Dataset, scale: Scale, rows: int, report: Report) -> None:
    floor = target.floor(big.url)
    since = T0 + timedelta(days=330)  # the last 30 of 360 days: about 8% of the rows
    # Bounds within days: whole days from the rollup, the rows of the two partial days scanned.
    within = (T0 + timedelta(days=30, hours=13, microseconds=5), T0 + timedelta(days=330, hours=7, minutes=30))
    cases = (
        ("cost_overview", (None, None)),
        ("cost_overview(since)", (since, None)),
        ("cost_overview(since, until)", within),
    )
    with SessionManager(big.url) as mgr:
        for label, (start, end) in cases:
            with CAPTURE() as statements:
                mgr.cost_overview(start, end)
            ours, theirs = interleaved(
                scale.overview_calls,
                lambda _n, start=start, end=end: mgr.cost_overview(start, end),
                lambda _n: floor.replay(statements),
                warmup=1,
            )
            report.compare(f"{label} of {rows:,} rows ({len(statements)} stmts)", ours, theirs, limit=1.5)
            if rows >= 1_000_000:
                report.check(f"{label}: {ours.median:.3f} s < 1 s at {rows:,} rows", ours.median < 1.0)
    floor.close()
