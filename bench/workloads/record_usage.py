"""``record_usage``: the session's user (for a record naming none), then the usage row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from floors import Floor
from harness import UTC, Report, Scale, interleaved

from starpod_session import SessionManager, UsageRecord


def _owner(floor: Floor, cur: Any, session_id: str) -> str:
    cur.execute(floor.sql("SELECT user_id FROM session_metadata WHERE id = ?"), (session_id,))
    row = cur.fetchone()
    if row is None:
        raise LookupError(session_id)
    return row[0]


def floor_record_usage(floor: Floor, session_id: str, record: UsageRecord, turn: int) -> None:
    with floor.write() as cur:
        owner = _owner(floor, cur, session_id)
        cur.execute(
            floor.sql(
                "INSERT INTO usage_stats (session_id, turn, input_tokens, output_tokens, cache_read, "
                "cache_write, cost_usd, model, user_id, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                session_id,
                turn,
                record.input_tokens,
                record.output_tokens,
                record.cache_read,
                record.cache_write,
                float(record.cost_usd),
                record.model,
                record.user_id or owner,
                floor.stamp(datetime.now(UTC)),
            ),
        )


def measure(mgr: SessionManager, floor: Floor, ours_id: str, floor_id: str, scale: Scale, report: Report) -> None:
    record = UsageRecord(
        input_tokens=1200, output_tokens=300, cache_read=4000, cost_usd=0.0123, model="claude-sonnet-4-5"
    )
    report.compare(
        "record_usage",
        *interleaved(
            scale.usage_calls,
            lambda n: mgr.record_usage(ours_id, record, n),
            lambda n: floor_record_usage(floor, floor_id, record, n),
        ),
        limit=2.0,
    )
