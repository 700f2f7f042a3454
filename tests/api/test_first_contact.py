"""What a new user expects of the facade: usage goes to the session's user, a saved
message is activity, and ``close()`` closes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel, SessionManager, StarpodSessionError, UsageRecord

T0 = datetime(2026, 3, 20, 8, 0, tzinfo=timezone.utc)


def test_usage_without_a_user_id_goes_to_the_sessions_user(manager):
    alice = manager.create_session(Channel.TELEGRAM, "chat-1", user_id="alice")
    manager.record_usage(alice, UsageRecord(input_tokens=10, cost_usd=0.5, model="opus"), turn=1)
    overview = manager.cost_overview()
    assert [(user.user_id, user.total_turns) for user in overview.by_user] == [("alice", 1)]


def test_an_explicit_usage_user_id_still_wins(manager):
    alice = manager.create_session(Channel.TELEGRAM, "chat-1", user_id="alice")
    manager.record_usage(alice, UsageRecord(input_tokens=10, cost_usd=0.5, user_id="billing"), turn=1)
    assert [user.user_id for user in manager.cost_overview().by_user] == ["billing"]


def test_saving_a_message_is_activity_but_not_a_request(manager):
    with freeze_time(T0):
        opened = manager.open_session(Channel.TELEGRAM, "chat", user_id="bob")
    later = T0 + timedelta(minutes=30)
    with freeze_time(later):
        manager.save_message(opened.session_id, "assistant", "hello")
    meta = manager.get_session(opened.session_id)
    assert meta.last_message_at == later
    assert meta.message_count == 0  # it counts touch_session calls, as in the original crate


def test_a_chat_saving_a_message_every_hour_is_never_auto_closed(manager):
    with freeze_time(T0):
        session_id = manager.open_session(Channel.TELEGRAM, "chat").session_id
    for hour in range(1, 13):  # twelve hours: twice the 6-hour gap, never 6 hours idle
        with freeze_time(T0 + timedelta(hours=hour)):
            opened = manager.open_session(Channel.TELEGRAM, "chat")
            assert (opened.session_id, opened.created, opened.closed_session_id) == (session_id, False, None)
            manager.save_message(session_id, "user", f"message {hour}")
    with freeze_time(T0 + timedelta(hours=18, minutes=1)):  # 6 h 1 min after the last message
        assert manager.open_session(Channel.TELEGRAM, "chat").closed_session_id == session_id


CALLS = [
    ("open_session", lambda m, sid: m.open_session(Channel.MAIN, "k")),
    ("create_session", lambda m, sid: m.create_session(Channel.MAIN, "other")),
    ("save_message", lambda m, sid: m.save_message(sid, "user", "hi")),
    ("get_messages", lambda m, sid: m.get_messages(sid)),
    ("get_session", lambda m, sid: m.get_session(sid)),
    ("list_sessions", lambda m, sid: m.list_sessions(10)),
    ("touch_session", lambda m, sid: m.touch_session(sid)),
    ("record_usage", lambda m, sid: m.record_usage(sid, UsageRecord(), 1)),
    ("session_usage", lambda m, sid: m.session_usage(sid)),
    ("cost_overview", lambda m, sid: m.cost_overview()),
]


@pytest.mark.parametrize("call", [case[1] for case in CALLS], ids=[case[0] for case in CALLS])
def test_after_close_every_call_says_the_manager_is_closed(make_manager, call):
    manager = make_manager()
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.close()
    manager.close()  # closing twice is fine
    with pytest.raises(StarpodSessionError, match="closed"):
        call(manager, session_id)


def test_closing_one_manager_leaves_the_data_to_the_next(make_manager):
    with make_manager() as first:
        session_id = first.create_session(Channel.MAIN, "k")
        first.save_message(session_id, "user", "kept")
    with pytest.raises(StarpodSessionError, match="closed"):
        first.get_messages(session_id)
    second = make_manager()
    assert [message.content for message in second.get_messages(session_id)] == ["kept"]
    assert isinstance(second, SessionManager)
