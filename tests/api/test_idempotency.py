"""Idempotency keys: a write repeated with its key (by the caller or by the library's retry) is stored once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from starpod_session import Channel, InvalidInput, SessionManager, StorageError, UsageRecord, UsageSummary
from starpod_session.storage.models import MessageRow, UsageRow

from ..helpers import RUST_FILES, raw_connection, raw_rows

RECORD = UsageRecord(100, 10, 1000, 5, 0.25, "opus")


def stored_rows(target: str, table: Any) -> int:
    """Rows of the table as the database holds them, read outside the library."""
    with raw_connection(target) as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_repeated_message_key_returns_the_first_id_and_writes_nothing(manager, session_id):
    first = manager.save_message(session_id, "assistant", "hello", message_key="msg-1")
    before = manager.get_session(session_id)
    # A repeat is answered from the first write, whatever it carries: no message, no title.
    again = manager.save_message(session_id, "user", "a different text", message_key="msg-1")
    assert again == first
    assert [(m.id, m.role, m.content) for m in manager.get_messages(session_id)] == [(first, "assistant", "hello")]
    assert manager.get_session(session_id) == before
    assert before.title is None


def test_a_repeated_usage_key_writes_nothing(manager, session_id):
    assert manager.record_usage(session_id, RECORD, 1, usage_key="turn-1") is None
    assert manager.record_usage(session_id, UsageRecord(7, 7, 7, 7, 7.0, "x"), 2, usage_key="turn-1") is None
    assert manager.session_usage(session_id) == UsageSummary(100, 10, 1000, 5, 0.25, 1)


def test_different_keys_and_calls_without_a_key_all_write(manager, session_id):
    ids = [
        manager.save_message(session_id, "user", "a", message_key="k"),
        manager.save_message(session_id, "user", "a", message_key="k "),  # keys compare exactly
        manager.save_message(session_id, "user", "a", message_key="K"),
        manager.save_message(session_id, "user", "a"),
        manager.save_message(session_id, "user", "a"),
    ]
    assert len(set(ids)) == 5
    for key in ("k", "k ", None, None):
        manager.record_usage(session_id, RECORD, 1, usage_key=key)
    assert manager.session_usage(session_id).total_turns == 4


def test_two_sessions_may_use_the_same_key(manager, session_id):
    other = manager.create_session(Channel.MAIN, "other")
    first = manager.save_message(session_id, "user", "hi", message_key="shared")
    second = manager.save_message(other, "user", "hi", message_key="shared")
    assert first != second
    assert [m.id for m in manager.get_messages(other)] == [second]
    manager.record_usage(session_id, RECORD, 1, usage_key="shared")
    manager.record_usage(other, RECORD, 1, usage_key="shared")
    assert manager.session_usage(other).total_turns == 1
    assert manager.cost_overview().total_turns == 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [("", "must not be empty"), ("x" * 256, "at most 255"), ("a\x00b", "NUL"), (7, "expected a str")],
    ids=["empty", "256-chars", "nul", "int"],
)
def test_a_bad_key_is_invalid_input_and_writes_nothing(manager, session_id, key, reason):
    with pytest.raises(InvalidInput, match=reason) as raised:
        manager.save_message(session_id, "user", "hi", message_key=key)
    assert raised.value.field == "message_key"
    with pytest.raises(InvalidInput, match=reason) as raised:
        manager.record_usage(session_id, RECORD, 1, usage_key=key)
    assert raised.value.field == "usage_key"
    assert manager.get_messages(session_id) == []
    assert manager.session_usage(session_id).total_turns == 0
    assert manager.get_session(session_id).title is None


def test_a_key_of_255_characters_is_accepted(manager, session_id):
    key = "é" * 255
    first = manager.save_message(session_id, "user", "hi", message_key=key)
    assert manager.save_message(session_id, "user", "hi", message_key=key) == first


def test_the_key_is_keyword_only(manager, session_id):
    with pytest.raises(TypeError):
        manager.save_message(session_id, "user", "hi", "positional-key")  # type: ignore[misc]


# -- races --------------------------------------------------------------------------------------------

THREADS = 8


def run_together(call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` on THREADS threads released at once; returns their results (or exceptions)."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:  # reported by the assertion below
            results[index] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_calls_with_one_message_key_store_one_message_and_share_its_id(manager, db_target, session_id):
    results = run_together(lambda: manager.save_message(session_id, "user", "hi", message_key="same"))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(set(results)) == 1
    assert [m.id for m in manager.get_messages(session_id)] == [results[0]]
    assert stored_rows(db_target, MessageRow.__table__) == 1


def test_racing_calls_with_one_usage_key_store_one_row(manager, db_target, session_id):
    results = run_together(lambda: manager.record_usage(session_id, RECORD, 1, usage_key="same"))
    assert results == [None] * THREADS
    assert manager.session_usage(session_id) == UsageSummary(100, 10, 1000, 5, 0.25, 1)
    assert stored_rows(db_target, UsageRow.__table__) == 1


# -- ambiguous commits ------------------------------------------------------------------------------

#: A deadlock as MariaDB's driver reports it: transient, so the library's retry loop tries again.
TRANSIENT = OperationalError("COMMIT", {}, Exception(1213, "Deadlock found when trying to get lock"))
#: A connection lost while committing: the caller cannot know whether the write happened.
CONNECTION_LOST = OperationalError("COMMIT", {}, Exception(2013, "Lost connection to server during query"))


def commit_then_fail(manager: SessionManager, monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[int]:
    """Make the manager's next transaction commit and then raise ``error``, as a lost COMMIT reply would.

    Returns a list that counts the attempts the library made.
    """
    guard = manager._transactions.guard
    attempts: list[int] = []

    def guarded(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            attempts.append(1)
            result = call(*args, **kwargs)  # committed
            if len(attempts) == 1:
                raise error
            return result

        return guard(attempt)

    monkeypatch.setattr(manager._transactions, "guard", guarded)
    return attempts


@pytest.mark.parametrize("key", [None, "caller-key"], ids=["generated-key", "caller-key"])
def test_the_librarys_retry_after_a_committed_attempt_does_not_double_a_message(
    manager, db_target, session_id, monkeypatch, key
):
    attempts = commit_then_fail(manager, monkeypatch, TRANSIENT)
    message_id = manager.save_message(session_id, "user", "hi", message_key=key)
    assert len(attempts) == 2, "the library retried the transient error"
    assert [m.id for m in manager.get_messages(session_id)] == [message_id]
    assert stored_rows(db_target, MessageRow.__table__) == 1


@pytest.mark.parametrize("key", [None, "caller-key"], ids=["generated-key", "caller-key"])
def test_the_librarys_retry_after_a_committed_attempt_does_not_double_a_usage_row(
    manager, db_target, session_id, monkeypatch, key
):
    attempts = commit_then_fail(manager, monkeypatch, TRANSIENT)
    manager.record_usage(session_id, RECORD, 1, usage_key=key)
    assert len(attempts) == 2
    assert manager.session_usage(session_id).total_turns == 1
    assert stored_rows(db_target, UsageRow.__table__) == 1


def test_exactly_once_recipe_a_caller_retrying_with_its_key_after_storage_error(
    manager, db_target, session_id, monkeypatch
):
    commit_then_fail(manager, monkeypatch, CONNECTION_LOST)
    with pytest.raises(StorageError):
        manager.save_message(session_id, "user", "hi", message_key="telegram:4711")
    # The write did commit; the caller cannot tell, and retries with the same key.
    message_id = manager.save_message(session_id, "user", "hi", message_key="telegram:4711")
    assert [m.id for m in manager.get_messages(session_id)] == [message_id]
    commit_then_fail(manager, monkeypatch, CONNECTION_LOST)
    with pytest.raises(StorageError):
        manager.record_usage(session_id, RECORD, 1, usage_key="telegram:4711:usage")
    manager.record_usage(session_id, RECORD, 1, usage_key="telegram:4711:usage")
    assert manager.session_usage(session_id).total_turns == 1


# -- Rust-era files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RUST_FILES)
def test_a_rust_era_file_gains_the_key_columns_with_every_old_row_unkeyed(writable_copy, name):
    copy = writable_copy(name, "adopted.sqlite")
    before = {table: len(raw_rows(copy, table)) for table in ("session_messages", "usage_stats")}
    with SessionManager(copy) as manager:
        session_id = raw_rows(copy, "session_metadata")[0]["id"]
        first = manager.save_message(session_id, "user", "hi", message_key="after-adoption")
        assert manager.save_message(session_id, "user", "hi", message_key="after-adoption") == first
        manager.record_usage(session_id, RECORD, 1, usage_key="after-adoption")
        manager.record_usage(session_id, RECORD, 1, usage_key="after-adoption")
    for table, column in (("session_messages", "message_key"), ("usage_stats", "usage_key")):
        keys = [row[column] for row in raw_rows(copy, table)]
        assert keys == [None] * before[table] + ["after-adoption"]
