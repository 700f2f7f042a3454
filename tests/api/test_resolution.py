"""resolve_session: when a message continues a session and when it starts a new one.

Also the on_close hook of auto-closes."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from freezegun import freeze_time

from starpod_session import (
    AUTO_CLOSE_SUMMARY,
    Channel,
    Continue,
    InvalidInput,
    New,
    SessionDecision,
    SessionManager,
    SessionMeta,
)

START = "2026-03-20T12:00:00+00:00"


def test_main_continues_an_open_session_however_old(manager):
    with freeze_time("2020-01-01T00:00:00+00:00") as clock:
        session_id = manager.create_session(Channel.MAIN, "web")
        clock.move_to("2030-06-01T00:00:00+00:00")
        assert manager.resolve_session(Channel.MAIN, "web") == Continue(session_id)
    assert manager.get_session(session_id).is_closed is False


@pytest.mark.parametrize("channel", list(Channel))
def test_no_session_gives_new_without_closed_id(manager, channel):
    assert manager.resolve_session(channel, "nobody-yet") == New(closed_session_id=None)


@pytest.mark.parametrize("channel", list(Channel))
def test_a_session_closed_by_hand_gives_new_without_closed_id(manager, channel):
    session_id = manager.create_session(channel, "k")
    manager.close_session(session_id, "done")
    assert manager.resolve_session(channel, "k") == New(closed_session_id=None)
    assert manager.get_session(session_id).summary == "done"


def test_telegram_continues_one_second_before_the_360_minute_gap(manager):
    with freeze_time(START) as clock:
        session_id = manager.create_session(Channel.TELEGRAM, "chat")
        clock.tick(timedelta(minutes=359, seconds=59))
        assert manager.resolve_session(Channel.TELEGRAM, "chat") == Continue(session_id)
    assert manager.get_session(session_id).is_closed is False


def test_telegram_auto_closes_at_exactly_360_minutes_and_reports_the_id_once(manager):
    with freeze_time(START) as clock:
        session_id = manager.create_session(Channel.TELEGRAM, "chat")
        clock.tick(timedelta(minutes=360))
        assert manager.resolve_session(Channel.TELEGRAM, "chat") == New(closed_session_id=session_id)
        closed = manager.get_session(session_id)
        assert closed.is_closed is True
        assert closed.summary == AUTO_CLOSE_SUMMARY == "Auto-closed: inactivity"
        assert manager.resolve_session(Channel.TELEGRAM, "chat") == New(closed_session_id=None)


@pytest.mark.parametrize(
    ("idle", "expect_continue"),
    [(timedelta(minutes=4, seconds=59), True), (timedelta(minutes=5), False)],
    ids=["4m59s-continues", "5m-closes"],
)
def test_gap_minutes_overrides_the_channel_gap(manager, idle, expect_continue):
    with freeze_time(START) as clock:
        session_id = manager.create_session(Channel.TELEGRAM, "chat")
        clock.tick(idle)
        decision = manager.resolve_session(Channel.TELEGRAM, "chat", gap_minutes=5)
    expected = Continue(session_id) if expect_continue else New(closed_session_id=session_id)
    assert decision == expected
    assert manager.get_session(session_id).is_closed is not expect_continue


def test_touch_session_restarts_the_inactivity_gap(manager):
    with freeze_time(START) as clock:
        session_id = manager.create_session(Channel.TELEGRAM, "chat")
        clock.tick(timedelta(minutes=300))
        manager.touch_session(session_id)
        clock.tick(timedelta(minutes=359))  # 659 minutes after creation, 359 after the touch
        assert manager.resolve_session(Channel.TELEGRAM, "chat") == Continue(session_id)
        clock.tick(timedelta(minutes=1))
        assert manager.resolve_session(Channel.TELEGRAM, "chat") == New(closed_session_id=session_id)


def test_a_last_message_in_the_future_continues_when_the_clock_moved_back(manager):
    with freeze_time(START) as clock:
        session_id = manager.create_session(Channel.TELEGRAM, "chat")
        clock.move_to("2026-03-19T12:00:00+00:00")
        assert manager.resolve_session(Channel.TELEGRAM, "chat") == Continue(session_id)


@pytest.mark.parametrize(
    ("channel", "key", "user_id"),
    [
        (Channel.TELEGRAM, "k", "admin"),  # other channel, same key
        (Channel.MAIN, "k2", "admin"),  # other key
        (Channel.MAIN, "k", "bob"),  # other user
    ],
    ids=["other-channel", "other-key", "other-user"],
)
def test_sessions_are_isolated_by_channel_key_and_user(manager, channel, key, user_id):
    mine = manager.create_session(Channel.MAIN, "k")
    assert manager.resolve_session(channel, key, user_id=user_id) == New(closed_session_id=None)
    theirs = manager.create_session(channel, key, user_id=user_id)
    assert theirs != mine
    assert manager.resolve_session(Channel.MAIN, "k") == Continue(mine)
    assert manager.resolve_session(channel, key, user_id=user_id) == Continue(theirs)


def test_auto_closing_one_key_leaves_the_other_keys_open(manager):
    with freeze_time(START) as clock:
        stale = manager.create_session(Channel.TELEGRAM, "chat", user_id="alice")
        other_user = manager.create_session(Channel.TELEGRAM, "chat", user_id="bob")
        main = manager.create_session(Channel.MAIN, "chat", user_id="alice")
        clock.tick(timedelta(hours=7))
        manager.touch_session(other_user)
        assert manager.resolve_session(Channel.TELEGRAM, "chat", user_id="alice") == New(stale)
    assert manager.get_session(other_user).is_closed is False
    assert manager.get_session(main).is_closed is False


@pytest.mark.parametrize(
    ("create_with", "resolve_with"),
    [
        (Channel.MAIN, "main"),
        ("main", Channel.MAIN),
        (Channel.TELEGRAM, "telegram"),
        ("telegram", Channel.TELEGRAM),
        (Channel.EMAIL, "email"),
        ("slack", Channel.SLACK),
    ],
)
def test_channel_enum_and_plain_names_are_the_same_channel(manager, create_with, resolve_with):
    session_id = manager.create_session(create_with, "k")
    assert manager.resolve_session(resolve_with, "k") == Continue(session_id)
    assert manager.get_session(session_id).channel == str(resolve_with)


def describe(decision: SessionDecision) -> str:
    match decision:
        case Continue(session_id=session_id):
            return f"continue {session_id}"
        case New(closed_session_id=None):
            return "new"
        case New(closed_session_id=closed):
            return f"new after closing {closed}"
    raise AssertionError(decision)


def test_decisions_work_with_structural_pattern_matching(manager):
    with freeze_time(START) as clock:
        assert describe(manager.resolve_session(Channel.TELEGRAM, "chat")) == "new"
        session_id = manager.create_session(Channel.TELEGRAM, "chat")
        assert describe(manager.resolve_session(Channel.TELEGRAM, "chat")) == f"continue {session_id}"
        clock.tick(timedelta(hours=6))
        assert describe(manager.resolve_session("telegram", "chat")) == f"new after closing {session_id}"
    assert SessionDecision.Continue is Continue and SessionDecision.New is New


# -- on_close ---------------------------------------------------------------


def test_on_close_gets_the_auto_closed_session_after_it_is_committed(make_manager):
    seen = []
    manager = None

    def on_close(meta):
        # Committed: a fresh transaction already sees the session closed.
        seen.append((meta, manager.get_session(meta.id).is_closed))

    manager = make_manager(on_close=on_close)
    with freeze_time(START) as clock:
        old = manager.open_session(Channel.TELEGRAM, "k").session_id
        clock.tick(timedelta(hours=6))
        opened = manager.open_session(Channel.TELEGRAM, "k")
    [(meta, closed_in_database)] = seen
    assert isinstance(meta, SessionMeta) and meta.id == old == opened.closed_session_id
    assert meta.is_closed and meta.summary == "Auto-closed: inactivity" and closed_in_database


def test_on_close_is_not_called_for_a_close_by_hand_or_a_continue(make_manager):
    seen = []
    manager = make_manager(on_close=seen.append)
    session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
    manager.resolve_session(Channel.TELEGRAM, "k")
    manager.close_session(session_id, "by hand")
    manager.resolve_session(Channel.TELEGRAM, "k")
    assert seen == []


def test_on_close_can_export_the_transcript(make_manager, tmp_path):
    exported = []
    manager = None
    manager = make_manager(on_close=lambda meta: exported.append(manager.export_transcript(meta.id)))
    with freeze_time(START) as clock:
        session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
        manager.save_message(session_id, "user", "hello")
        clock.tick(timedelta(hours=7))
        manager.resolve_session(Channel.TELEGRAM, "k")
    [path] = exported
    assert "- Summary: Auto-closed: inactivity\n" in path.read_text()


def test_a_failing_on_close_does_not_undo_the_close(make_manager, caplog):
    def on_close(meta):
        raise RuntimeError("webhook down")

    manager = make_manager(on_close=on_close)
    with freeze_time(START) as clock:
        session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
        clock.tick(timedelta(hours=6))
        with caplog.at_level(logging.ERROR, logger="starpod_session"):
            decision = manager.resolve_session(Channel.TELEGRAM, "k")
    assert decision == New(closed_session_id=session_id)
    assert manager.get_session(session_id).is_closed
    assert "webhook down" in caplog.text and session_id in caplog.text


@pytest.mark.parametrize("call", ["open_session", "resolve_session"])
def test_on_close_is_called_once_when_many_threads_resolve_the_stale_session(make_manager, backend, call):
    calls = []
    lock = threading.Lock()

    def on_close(meta):
        with lock:
            calls.append(meta.id)

    manager = make_manager(on_close=on_close)
    with freeze_time(START):
        stale = manager.open_session(Channel.TELEGRAM, "k").session_id
    threads, barrier = 8, threading.Barrier(8)
    results = []

    def resolve():
        barrier.wait()
        results.append(getattr(manager, call)(Channel.TELEGRAM, "k"))

    workers = [threading.Thread(target=resolve) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert calls == [stale]
    assert len(results) == threads
    assert [getattr(r, "closed_session_id", None) for r in results].count(stale) == 1
    if call == "open_session":
        assert len({r.session_id for r in results}) == 1


def test_on_close_must_be_callable(tmp_path):
    with pytest.raises(InvalidInput) as raised:
        SessionManager(tmp_path / "s.db", on_close="export")
    assert raised.value.field == "on_close"
