"""delete_session, forget_user and prune: what goes, what stays, and proof that nothing of a forgotten user is left."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from freezegun import freeze_time

from starpod_session import InvalidInput, SessionManager, SessionNotFound, UsageRecord
from starpod_session.backends.engine import create_storage_engine, to_url
from starpod_session.storage.schema import expression_index_warnings_silenced

MARKER = "zebracornflux"


def populate(manager: SessionManager, user_id: str, key: str, *, close: bool = True) -> str:
    session_id = manager.create_session("telegram", key, user_id=user_id)
    manager.save_message(session_id, "user", f"{user_id} says {MARKER} about deploys")
    manager.save_message(session_id, "assistant", "noted")
    manager.record_usage(session_id, UsageRecord(10, 5, cost_usd=0.5, model="m", user_id=user_id), turn=1)
    manager.record_compaction(session_id, "auto", 100, f"summary mentioning {MARKER}", 2)
    if close:
        manager.close_session(session_id, f"closed {MARKER}")
        manager.export_transcript(session_id)
    return session_id


def test_delete_session_keeps_detached_usage_and_removes_the_rest(manager):
    doomed = populate(manager, "alice", "1")
    kept = populate(manager, "alice", "2")
    erasure = manager.delete_session(doomed)
    assert (erasure.sessions, erasure.messages, erasure.compactions, erasure.usage_rows, erasure.transcripts) == (
        1,
        2,
        1,
        0,
        1,
    )
    assert manager.get_session(doomed) is None and manager.get_messages(doomed) == []
    assert manager.session_usage(doomed).total_turns == 1  # kept for accounting, under the id as text
    assert [h.session_id for h in manager.search_messages(MARKER)] == [kept]
    assert [p.name for p in manager.sessions_dir.iterdir()] == [f"alice-says-zebracornflux-about-deploys-{kept[:8]}.md"]
    assert manager.cost_overview().total_turns == 2


def test_delete_session_without_usage_and_unknown_ids(manager):
    doomed = populate(manager, "alice", "1", close=False)
    assert manager.delete_session(doomed, keep_usage=False).usage_rows == 1
    assert manager.session_usage(doomed).total_turns == 0
    with pytest.raises(SessionNotFound):
        manager.delete_session(doomed)
    with pytest.raises(InvalidInput):
        manager.delete_session(doomed, keep_usage="no")


def every_value(target: str) -> list[tuple[str, str, object]]:
    """(table, column, value) of every column of every row of every table, found by reflection."""
    engine = create_storage_engine(to_url(target))
    try:
        with engine.connect() as connection, expression_index_warnings_silenced():
            metadata = sa.MetaData()
            metadata.reflect(connection)
            found = []
            for table in metadata.sorted_tables:
                for row in connection.execute(sa.select(table)).mappings():
                    found += [(table.name, column, value) for column, value in row.items()]
            return found
    finally:
        engine.dispose()


def mentions(value: object, needle: str) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return needle.encode() in bytes(value)
    return needle in str(value)


def test_forget_user_leaves_no_row_or_file_with_the_user_or_their_words(manager, db_target):
    user = "user-7f3c-forget-me"
    mine = [populate(manager, user, "1"), populate(manager, user, "2", close=False)]
    other = populate(manager, "bob", "3")
    before = manager.cost_overview()

    erasure = manager.forget_user(user)

    assert (erasure.sessions, erasure.messages, erasure.compactions, erasure.usage_rows, erasure.transcripts) == (
        2,
        4,
        2,
        2,
        1,
    )
    assert erasure.pseudonym.startswith("forgotten-") and user not in erasure.pseudonym
    # Every message and summary of the user quoted the user id; Bob's rows carry MARKER legitimately.
    for table, column, value in every_value(db_target):
        assert not mentions(value, user), (table, column)
        for session_id in mine:
            assert not mentions(value, session_id) or table == "usage_stats", (table, column)
    for path in manager.sessions_dir.rglob("*"):
        assert user not in path.name and user not in path.read_text(encoding="utf-8")
    assert {h.session_id for h in manager.search_messages(MARKER)} == {other}
    after = manager.cost_overview()
    assert (after.total_turns, after.total_cost_usd) == (before.total_turns, before.total_cost_usd)
    assert {u.user_id for u in after.by_user} == {"bob", erasure.pseudonym}
    assert manager.forget_user(user).sessions == 0


def test_forget_user_also_purges_the_words_from_the_search_index_storage(manager, db_target):
    """On SQLite the FTS5 shadow tables hold the index; after forgetting, no blob holds the user's words."""
    populate(manager, "carol", "1")
    manager.save_message(manager.create_session("main", "x", user_id="dave"), "user", "unrelated words")
    manager.forget_user("carol")
    for table, column, value in every_value(db_target):
        assert not mentions(value, MARKER), (table, column)
        assert not mentions(value, "carol"), (table, column)


def test_prune_deletes_old_closed_sessions_in_batches_and_dry_run_only_counts(manager):
    with freeze_time("2026-01-01T00:00:00Z"):
        old = [populate(manager, "alice", str(n)) for n in range(5)]
        still_open = populate(manager, "alice", "open", close=False)
    with freeze_time("2026-06-01T00:00:00Z"):
        recent = populate(manager, "alice", "recent")
        counted = manager.prune(timedelta(days=90), dry_run=True)
        assert (counted.sessions, counted.messages, counted.compactions) == (5, 10, 5)
        assert all(manager.get_session(s) for s in old)
        erasure = manager.prune(timedelta(days=90), batch_size=2)
    assert (erasure.sessions, erasure.messages, erasure.compactions, erasure.transcripts) == (5, 10, 5, 5)
    assert all(manager.get_session(s) is None for s in old)
    assert manager.get_session(still_open) and manager.get_session(recent)
    assert manager.prune(datetime(2026, 1, 2, tzinfo=timezone.utc)).sessions == 0
    for bad in (timedelta(days=-1), datetime(2026, 1, 2), "90d", 90):
        with pytest.raises(InvalidInput):
            manager.prune(bad)


def test_delete_and_forget_dry_runs_count_in_the_database_and_change_nothing(manager, db_target):
    kept = populate(manager, "erin", "1")
    populate(manager, "erin", "2")
    populate(manager, "frank", "1")
    before = every_value(db_target)
    assert manager.delete_session(kept, dry_run=True) == manager.delete_session(kept, dry_run=True)
    counted = manager.delete_session(kept, keep_usage=False, dry_run=True)
    assert (counted.sessions, counted.messages, counted.compactions, counted.usage_rows) == (1, 2, 1, 1)
    forgotten = manager.forget_user("erin", dry_run=True)
    assert (forgotten.sessions, forgotten.messages, forgotten.compactions, forgotten.usage_rows) == (2, 4, 2, 2)
    assert forgotten.pseudonym is None and forgotten.transcripts == 0
    assert every_value(db_target) == before
    with pytest.raises(SessionNotFound):
        manager.delete_session("no-such-session", dry_run=True)
    erased = manager.forget_user("erin")
    assert (erased.sessions, erased.messages, erased.compactions, erased.usage_rows) == (2, 4, 2, 2)
