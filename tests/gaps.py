"""A check shared by the channel and configuration tests: where a channel's gap lies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from freezegun import freeze_time

from starpod_session import Channel, Continue, New, SessionManager

T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


def assert_gap_is(manager: SessionManager, channel: Channel | str, minutes: int, key: str = "k") -> None:
    """A session of ``channel`` continues one second before ``minutes`` of inactivity and auto-closes at it."""
    with freeze_time(T0) as clock:
        session_id = manager.create_session(channel, key)
        clock.tick(timedelta(minutes=minutes) - timedelta(seconds=1))
        assert manager.resolve_session(channel, key) == Continue(session_id)
        clock.tick(timedelta(seconds=1))
        assert manager.resolve_session(channel, key) == New(closed_session_id=session_id)
