"""Session lifecycle: creation, touch, titles, read state, closing and listing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel

NOW = datetime(2026, 3, 20, 12, 34, 56, 123456, tzinfo=timezone.utc)


def test_create_session_stores_an_open_read_untitled_session_created_now(manager):
    with freeze_time(NOW):
        session_id = manager.create_session(Channel.TELEGRAM, "chat-1", triggered_by="cron:daily")
    assert str(uuid.UUID(session_id)) == session_id and uuid.UUID(session_id).version == 4
    meta = manager.get_session(session_id)
    assert meta.id == session_id
    assert meta.channel == "telegram"
    assert meta.channel_session_key == "chat-1"
    assert meta.user_id == "admin"
    assert meta.triggered_by == "cron:daily"
    assert meta.is_closed is False
    assert meta.is_read is True
    assert meta.message_count == 0
    assert meta.title is None and meta.summary is None
    assert meta.created_at == meta.last_message_at == NOW
    assert meta.created_at.utcoffset() == timedelta(0)


def test_create_session_records_the_given_user_and_no_trigger_by_default(manager):
    meta = manager.get_session(manager.create_session(Channel.MAIN, "k", user_id="alice"))
    assert (meta.user_id, meta.triggered_by) == ("alice", None)


def test_touch_session_counts_a_request_and_sets_last_message_at(manager):
    with freeze_time(NOW) as clock:
        session_id = manager.create_session(Channel.MAIN, "k")
        clock.tick(timedelta(minutes=3))
        manager.touch_session(session_id)
        manager.touch_session(session_id)
    meta = manager.get_session(session_id)
    assert meta.message_count == 2
    assert meta.last_message_at == NOW + timedelta(minutes=3)
    assert meta.created_at == NOW


@pytest.mark.parametrize(
    ("title", "stored", "kept_bytes"),
    [
        ("a" * 100, "a" * 100, 100),
        ("a" * 101, "a" * 100 + "...", 100),
        ("é" * 50, "é" * 50, 100),  # exactly 100 bytes
        ("é" * 60, "é" * 50 + "...", 100),  # 120 bytes
        ("🛒" * 30, "🛒" * 25 + "...", 100),  # 120 bytes
        ("a" * 99 + "é", "a" * 99 + "...", 99),  # the cut at 100 bytes falls inside é
        ("a" * 98 + "🛒" + "b", "a" * 98 + "...", 98),  # ... inside a 4-byte character
        ("a" * 98 + "€" * 2, "a" * 98 + "...", 98),  # ... inside a 3-byte character
        ("x" * 300, "x" * 100 + "...", 100),  # longer than the 255-character column
    ],
    ids=[
        "ascii-100-bytes-kept",
        "ascii-101-bytes-cut",
        "e-acute-100-bytes-kept",
        "e-acute-120-bytes-cut",
        "emoji-120-bytes-cut",
        "cut-backs-off-from-2-byte-char",
        "cut-backs-off-from-4-byte-char",
        "cut-backs-off-from-3-byte-char",
        "ascii-300-chars-cut",
    ],
)
def test_titles_over_100_utf8_bytes_are_cut_on_a_character_boundary(manager, title, stored, kept_bytes):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.set_title_if_empty(session_id, title)
    returned = manager.get_session(session_id).title
    assert returned == stored
    assert len(returned.removesuffix("...").encode("utf-8")) == kept_bytes


def test_set_title_if_empty_keeps_the_first_title(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.set_title_if_empty(session_id, "First")
    manager.set_title_if_empty(session_id, "Second")
    assert manager.get_session(session_id).title == "First"


def test_a_user_message_titles_an_untitled_session(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.save_message(session_id, "user", "Plan my trip to Lisbon " + "please " * 20)
    expected = "Plan my trip to Lisbon " + "please " * 11 + "..."  # the first 100 bytes, then "..."
    assert manager.get_session(session_id).title == expected
    manager.save_message(session_id, "user", "Something else")
    assert manager.get_session(session_id).title == expected


def test_an_assistant_message_does_not_title_the_session(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.save_message(session_id, "assistant", "Hello, how can I help?")
    assert manager.get_session(session_id).title is None


def test_a_whitespace_only_user_message_does_not_title_the_session(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.save_message(session_id, "user", " \n\t ")
    assert manager.get_session(session_id).title is None
    manager.save_message(session_id, "user", "Real question")
    assert manager.get_session(session_id).title == "Real question"


def test_a_user_message_does_not_replace_an_existing_title(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.set_title_if_empty(session_id, "Chosen")
    manager.save_message(session_id, "user", "Hello")
    assert manager.get_session(session_id).title == "Chosen"


def test_new_sessions_are_read_and_mark_read_toggles(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    assert manager.get_session(session_id).is_read is True
    manager.mark_read(session_id, False)
    assert manager.get_session(session_id).is_read is False
    manager.mark_read(session_id, False)
    assert manager.get_session(session_id).is_read is False
    manager.mark_read(session_id, True)
    assert manager.get_session(session_id).is_read is True


def test_close_session_closes_with_the_summary_and_closing_again_replaces_it(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.close_session(session_id, "Talked about Lisbon")
    meta = manager.get_session(session_id)
    assert (meta.is_closed, meta.summary) == (True, "Talked about Lisbon")
    manager.close_session(session_id, "Revised summary")
    assert manager.get_session(session_id).summary == "Revised summary"


def test_get_session_of_an_unknown_id_is_none(manager):
    manager.create_session(Channel.MAIN, "k")
    assert manager.get_session(str(uuid.uuid4())) is None


def test_list_sessions_puts_the_most_recent_last_message_at_first(manager):
    with freeze_time(NOW) as clock:
        first = manager.create_session(Channel.MAIN, "a")
        clock.tick(timedelta(seconds=1))
        second = manager.create_session(Channel.TELEGRAM, "b", user_id="bob")
        clock.tick(timedelta(seconds=1))
        third = manager.create_session(Channel.MAIN, "c")
        manager.close_session(third, "closed sessions are listed too")
        clock.tick(timedelta(seconds=1))
        manager.touch_session(first)
    assert [meta.id for meta in manager.list_sessions(10)] == [first, third, second]


def test_list_sessions_ties_on_last_message_at_are_broken_by_created_at_then_id_descending(manager):
    with freeze_time(NOW) as clock:
        older = manager.create_session(Channel.MAIN, "older")
        clock.tick(timedelta(seconds=1))
        newer = manager.create_session(Channel.MAIN, "newer")
        twins = [manager.create_session(Channel.MAIN, f"twin-{n}") for n in range(3)]
        clock.tick(timedelta(seconds=1))
        # older and newer now share last_message_at; newer was created later.
        manager.touch_session(older)
        manager.touch_session(newer)
    listed = [meta.id for meta in manager.list_sessions(10)]
    # The twins share both last_message_at and created_at with each other: id decides.
    assert listed == [newer, older, *sorted(twins, reverse=True)]


@pytest.mark.parametrize(("limit", "expected"), [(0, 0), (2, 2), (3, 3), (10, 3)])
def test_list_sessions_returns_at_most_limit_sessions(manager, limit, expected):
    for key in ("a", "b", "c"):
        manager.create_session(Channel.MAIN, key)
    assert len(manager.list_sessions(limit)) == expected
