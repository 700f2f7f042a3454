"""``list_sessions(20)``: the twelve metadata columns, most recently active first."""

from __future__ import annotations

from datasets import Target, load_dataset
from floors import Floor
from harness import Report, Scale, interleaved

from starpod_session import SessionManager


def floor_list_sessions(floor: Floor, limit: int) -> list[tuple]:
    parse = floor.parse
    with floor.read() as cur:
        cur.execute(
            floor.sql(
                "SELECT id, created_at, last_message_at, is_closed, summary, title, message_count, channel, "
                "channel_session_key, user_id, is_read, triggered_by FROM session_metadata "
                "ORDER BY last_message_at DESC, created_at DESC, id DESC LIMIT ?"
            ),
            (limit,),
        )
        return [
            (r[0], parse(r[1]), parse(r[2]), bool(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11])
            for r in cur.fetchall()
        ]


def run(target: Target, scale: Scale, report: Report) -> None:
    rows = scale.list_sessions_rows
    data = load_dataset(target, "list", sessions=rows, messages=0, usage=0, with_10k=False)
    floor = target.floor(data.url)
    with SessionManager(data.url) as mgr:
        assert [s.id for s in mgr.list_sessions(20)] == [r[0] for r in floor_list_sessions(floor, 20)]
        report.compare(
            f"list_sessions(20) of {rows:,}",
            *interleaved(scale.list_calls, lambda _n: mgr.list_sessions(20), lambda _n: floor_list_sessions(floor, 20)),
            limit=2.0,
        )
    floor.close()
