"""Archiving sessions: hidden from the default listing, still there for everything else.

The first four tests port the Rust crate's own (v0.3.2, ``test_archive_*``);
the crate's ``test_archive_nonexistent_session_succeeds`` becomes a
``SessionNotFound`` here, as for every other write of ours.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel, SessionMeta, SessionNotFound

NOW = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


# -- ported from the crate --------------------------------------------------------------------


def test_archive_session(manager):
    session_id = manager.create_session(Channel.MAIN, "k1")
    assert manager.get_session(session_id).is_archived is False

    manager.archive_session(session_id, True)
    assert manager.get_session(session_id).is_archived is True

    manager.archive_session(session_id, False)
    assert manager.get_session(session_id).is_archived is False


def test_archived_sessions_excluded_from_list(manager):
    first, second, third = (manager.create_session(Channel.MAIN, key) for key in ("k1", "k2", "k3"))
    manager.archive_session(second, True)

    listed = {meta.id for meta in manager.list_sessions(10)}
    assert listed == {first, third}


def test_archived_session_still_accessible_by_id(manager):
    session_id = manager.create_session(Channel.MAIN, "k1")
    manager.archive_session(session_id, True)

    meta = manager.get_session(session_id)
    assert meta is not None and meta.is_archived


def test_archiving_an_unknown_session_raises_session_not_found(manager):
    # The crate's UPDATE matches nothing and succeeds; ours says so, as every write does.
    with pytest.raises(SessionNotFound):
        manager.archive_session("nonexistent-id", True)


# -- ours ---------------------------------------------------------------------------------------


@pytest.fixture
def sessions(manager):
    """Four sessions a second apart; ``old-archived`` and ``new-archived-closed`` archived."""
    made = {}
    with freeze_time(NOW) as clock:
        for name in ("old-archived", "old", "new-archived-closed", "new"):
            made[name] = manager.create_session(Channel.MAIN, name)
            clock.tick(timedelta(seconds=1))
    manager.archive_session(made["old-archived"])
    manager.archive_session(made["new-archived-closed"])
    manager.close_session(made["new-archived-closed"], "done")
    return made


def listed(manager, sessions, **filters):
    by_id = {session_id: name for name, session_id in sessions.items()}
    return [by_id[meta.id] for meta in manager.list_sessions(10, **filters)]


@pytest.mark.parametrize(
    ("archived", "expected"),
    [
        (False, ["new", "old"]),
        (True, ["new-archived-closed", "old-archived"]),
        (None, ["new", "new-archived-closed", "old", "old-archived"]),
    ],
)
def test_the_archived_filter_keeps_the_recency_order(manager, sessions, archived, expected):
    assert listed(manager, sessions, archived=archived) == expected


def test_archived_combines_with_the_other_filters_and_the_limit(manager, sessions):
    assert listed(manager, sessions, archived=True, is_closed=False) == ["old-archived"]
    assert listed(manager, sessions, archived=None, is_closed=True) == ["new-archived-closed"]
    assert [m.id for m in manager.list_sessions(1, archived=True)] == [sessions["new-archived-closed"]]


def test_archiving_is_independent_of_closing(manager, sessions):
    closed = manager.get_session(sessions["new-archived-closed"])
    assert (closed.is_archived, closed.is_closed, closed.summary) == (True, True, "done")
    manager.archive_session(sessions["new-archived-closed"], False)
    restored = manager.get_session(sessions["new-archived-closed"])
    assert (restored.is_archived, restored.is_closed, restored.summary) == (False, True, "done")

    archived_open = manager.get_session(sessions["old-archived"])
    assert not archived_open.is_closed
    # An archived open session still continues its key: archiving hides it, nothing more.
    assert manager.open_session(Channel.MAIN, "old-archived").session_id == sessions["old-archived"]


def test_archiving_twice_is_harmless_and_touches_nothing_else(manager, sessions):
    before = manager.get_session(sessions["old-archived"])
    manager.archive_session(sessions["old-archived"])
    assert manager.get_session(sessions["old-archived"]) == before


def test_session_meta_built_positionally_the_old_way_is_not_archived():
    meta = SessionMeta("id", NOW, NOW, False, None, None, 0, "main", "k", "admin", True)
    assert (meta.triggered_by, meta.is_archived) == (None, False)
