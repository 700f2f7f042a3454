"""``resolve_session`` + ``touch_session`` on a hot key: two transactions, as a caller of ours makes them."""

from __future__ import annotations

from datetime import datetime

from floors import Floor
from harness import AUTO_CLOSE, TELEGRAM_GAP, UTC, Report, Scale, interleaved

from starpod_session import Channel, SessionManager


def floor_resolve(floor: Floor, channel: str, key: str, user_id: str = "admin") -> str | None:
    with floor.write() as cur:
        cur.execute(
            floor.sql(
                "SELECT id, last_message_at FROM session_metadata WHERE channel = ? "
                "AND channel_session_key = ? AND user_id = ? AND open_slot = 1"
            ),
            (channel, key, user_id),
        )
        row = cur.fetchone()
        if row is None:
            return None
        last = floor.parse(row[1])
        if channel == "telegram" and datetime.now(UTC) - last >= TELEGRAM_GAP:
            cur.execute(
                floor.sql(
                    "UPDATE session_metadata SET is_closed = true, summary = ? WHERE id = ? AND is_closed = false"
                ),
                (AUTO_CLOSE, row[0]),
            )
            return None
        return row[0]


def floor_touch(floor: Floor, session_id: str) -> None:
    with floor.write() as cur:
        cur.execute(
            floor.sql(
                "UPDATE session_metadata SET last_message_at = ?, message_count = message_count + 1 WHERE id = ?"
            ),
            (floor.stamp(datetime.now(UTC)), session_id),
        )
        if cur.rowcount != 1:
            raise LookupError(session_id)


def measure(mgr: SessionManager, floor: Floor, scale: Scale, report: Report) -> None:
    hot_ours = mgr.open_session(Channel.TELEGRAM, "hot-ours").session_id
    hot_floor = mgr.open_session(Channel.TELEGRAM, "hot-floor").session_id

    def ours_hot(_n: int) -> None:
        decision = mgr.resolve_session(Channel.TELEGRAM, "hot-ours")
        mgr.touch_session(decision.session_id)

    def floor_hot(_n: int) -> None:
        floor_touch(floor, floor_resolve(floor, "telegram", "hot-floor"))

    report.compare("resolve_session+touch (hot key)", *interleaved(scale.hot_calls, ours_hot, floor_hot), limit=2.0)
    assert mgr.get_session(hot_ours).is_closed is False and mgr.get_session(hot_floor).is_closed is False
