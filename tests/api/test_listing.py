"""Filtered session listing and keyset paging of long transcripts."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import event

from starpod_session import Channel, InvalidInput

NOW = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def sessions(manager):
    """Five sessions, one second apart, with every combination the filters tell apart."""
    made = {}
    with freeze_time(NOW) as clock:
        for name, channel, user in [
            ("alice-main", Channel.MAIN, "alice"),
            ("alice-tg", Channel.TELEGRAM, "alice"),
            ("bob-main", Channel.MAIN, "bob"),
            ("bob-tg", Channel.TELEGRAM, "bob"),
            ("admin-main", Channel.MAIN, "admin"),
        ]:
            made[name] = manager.create_session(channel, name, user_id=user)
            clock.tick(timedelta(seconds=1))
    manager.close_session(made["alice-tg"], "done")
    manager.close_session(made["bob-main"], "done")
    manager.mark_read(made["bob-tg"], False)
    manager.mark_read(made["alice-main"], False)
    return made


def listed(manager, sessions, limit=10, **filters):
    by_id = {session_id: name for name, session_id in sessions.items()}
    return [by_id[meta.id] for meta in manager.list_sessions(limit, **filters)]


def test_without_filters_every_session_is_listed_most_recent_first(manager, sessions):
    assert listed(manager, sessions) == ["admin-main", "bob-tg", "bob-main", "alice-tg", "alice-main"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"user_id": "alice"}, ["alice-tg", "alice-main"]),
        ({"user_id": "nobody"}, []),
        ({"channel": Channel.TELEGRAM}, ["bob-tg", "alice-tg"]),
        ({"channel": "main"}, ["admin-main", "bob-main", "alice-main"]),
        ({"is_closed": True}, ["bob-main", "alice-tg"]),
        ({"is_closed": False}, ["admin-main", "bob-tg", "alice-main"]),
        ({"is_read": False}, ["bob-tg", "alice-main"]),
        ({"is_read": True}, ["admin-main", "bob-main", "alice-tg"]),
        ({"user_id": "bob", "channel": "telegram", "is_closed": False, "is_read": False}, ["bob-tg"]),
        ({"user_id": "bob", "is_closed": True, "is_read": False}, []),
        ({"user_id": None, "channel": None, "is_closed": None, "is_read": None}, None),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_filters_combine_and_keep_the_recency_order(manager, sessions, filters, expected):
    everything = ["admin-main", "bob-tg", "bob-main", "alice-tg", "alice-main"]
    assert listed(manager, sessions, **filters) == (everything if expected is None else expected)


def test_the_limit_applies_after_filtering(manager, sessions):
    assert listed(manager, sessions, 1, channel="main", is_closed=False) == ["admin-main"]
    assert listed(manager, sessions, 0, user_id="alice") == []


def query_plans(manager, call):
    """SQLite's plan of every statement ``call`` runs on the manager."""
    statements = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(manager._engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(manager._engine, "before_cursor_execute", capture)
    with sqlite3.connect(manager.target) as raw:
        return [
            " / ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)) for sql, params in statements
        ]


# -- paging a transcript ----------------------------------------------------


@pytest.fixture
def transcript(manager):
    session_id = manager.create_session(Channel.MAIN, "long")
    ids = [manager.save_message(session_id, "user", f"message {n}") for n in range(10)]
    other = manager.create_session(Channel.MAIN, "other")
    manager.save_message(other, "user", "not in this session")
    return session_id, ids


def test_limit_gives_the_newest_messages_in_ascending_order(manager, transcript):
    session_id, ids = transcript
    assert [m.id for m in manager.get_messages(session_id, limit=3)] == ids[-3:]


def test_before_id_pages_backwards_through_the_whole_transcript(manager, transcript):
    session_id, ids = transcript
    pages, before = [], None
    while page := manager.get_messages(session_id, limit=4, before_id=before):
        pages.append([m.id for m in page])
        before = page[0].id
    assert pages == [ids[6:], ids[2:6], ids[:2]]


def test_before_id_alone_gives_every_earlier_message(manager, transcript):
    session_id, ids = transcript
    assert [m.id for m in manager.get_messages(session_id, before_id=ids[5])] == ids[:5]
    assert manager.get_messages(session_id, before_id=ids[0]) == []


def test_paging_edge_cases(manager, transcript):
    session_id, ids = transcript
    assert manager.get_messages(session_id, limit=0) == []
    assert [m.id for m in manager.get_messages(session_id, limit=100)] == ids
    assert manager.get_messages(session_id, limit=None, before_id=None) == manager.get_messages(session_id)
    assert manager.get_messages(str(uuid.uuid4()), limit=5) == []


def test_a_page_reads_the_message_index_backwards_on_sqlite(make_manager, backend):
    if backend != "sqlite":
        pytest.skip("the plan is read with SQLite's EXPLAIN QUERY PLAN")
    manager = make_manager()
    [plan] = query_plans(manager, lambda: manager.get_messages("some-id", limit=20, before_id=1000))
    assert "idx_session_messages_session" in plan and "TEMP B-TREE" not in plan


def test_session_ids_starting_with_finds_short_ids_literally(manager):
    ids = sorted(manager.create_session(Channel.MAIN, f"k{n}") for n in range(3))
    assert manager.session_ids_starting_with(ids[0][:8]) == [ids[0]]
    assert manager.session_ids_starting_with(ids[0]) == [ids[0]]
    assert manager.session_ids_starting_with("%") == []  # LIKE wildcards are matched literally
    assert manager.session_ids_starting_with("_") == []
    with pytest.raises(InvalidInput) as raised:
        manager.session_ids_starting_with("")
    assert raised.value.field == "prefix"
