"""``get_messages`` of a 100- and a 10,000-message session: rows become records with aware timestamps."""

from __future__ import annotations

from datasets import Dataset
from floors import Floor
from harness import Report, Scale, interleaved

from starpod_session import SessionManager


def floor_get_messages(floor: Floor, session_id: str) -> list[tuple]:
    parse = floor.parse
    with floor.read() as cur:
        cur.execute(
            floor.sql(
                "SELECT id, session_id, role, content, timestamp FROM session_messages WHERE session_id = ? ORDER BY id"
            ),
            (session_id,),
        )
        return [(i, s, r, c, parse(t)) for i, s, r, c, t in cur.fetchall()]


def measure(mgr: SessionManager, floor: Floor, data: Dataset, scale: Scale, report: Report) -> None:
    for label, session_id, calls in (
        ("get_messages (100 msgs)", data.with_100, scale.get_small_calls),
        (f"get_messages ({scale.long_session:,} msgs)", data.with_10k, scale.get_large_calls),
    ):
        assert len(mgr.get_messages(session_id)) == len(floor_get_messages(floor, session_id))
        report.compare(
            label,
            *interleaved(
                calls,
                lambda _n, session_id=session_id: mgr.get_messages(session_id),
                lambda _n, session_id=session_id: floor_get_messages(floor, session_id),
            ),
            limit=2.0,
        )
