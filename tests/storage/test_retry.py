"""Which errors are retried, and what the caller gets when retries run out."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from starpod_session import Channel, InvalidInput, RetryPolicy, SessionManager, StorageBusy
from starpod_session.adk_store import AdkEvent, AdkMessage, AdkStore
from starpod_session.retry import is_transient
from starpod_session.storage.models import SessionRow

from ..helpers import raw_connection

#: Driver errors as pymysql raises them: the error number first.
DEADLOCK = (1213, "Deadlock found when trying to get lock; try restarting transaction")
SAVEPOINT_GONE = (1305, "SAVEPOINT sa_savepoint_1 does not exist")


def driver_error(args: tuple[int, str]) -> Exception:
    return Exception(*args)


def surfaced_after(first: BaseException, then: tuple[int, str]) -> OperationalError:
    """The error SQLAlchemy raises when a statement fails while ``first`` is being handled."""
    try:
        try:
            raise first
        except BaseException:
            raise OperationalError("ROLLBACK TO SAVEPOINT sa_savepoint_1", {}, driver_error(then)) from None
    except OperationalError as surfaced:
        return surfaced


def test_a_failed_savepoint_rollback_after_a_deadlock_is_retried():
    # MariaDB rolled the whole transaction back on the deadlock, taking the savepoint with it.
    deadlock = OperationalError("INSERT INTO session_metadata ...", {}, driver_error(DEADLOCK))
    surfaced = surfaced_after(deadlock, then=SAVEPOINT_GONE)
    assert surfaced.__context__ is deadlock
    assert is_transient(surfaced)


def test_a_failed_savepoint_rollback_after_anything_else_is_not_retried():
    assert not is_transient(OperationalError("ROLLBACK TO SAVEPOINT", {}, driver_error(SAVEPOINT_GONE)))
    duplicate = IntegrityError("INSERT", {}, driver_error((1062, "Duplicate entry")))
    assert not is_transient(surfaced_after(duplicate, then=SAVEPOINT_GONE))


# -- lock contention end to end ---------------------------------------------------------------------

#: How long the lock holder keeps its lock unless told to let go: far beyond the lock_timeout under test.
HOLD_SECONDS = 20


@attrs.frozen
class ObservedPolicy(RetryPolicy):
    """Retries without waiting, calling ``on_pause`` (with the failures so far) instead."""

    on_pause: Callable[[int], None] = attrs.field(default=lambda failures: None, kw_only=True)

    def pause(self, failed_attempts: int) -> None:
        self.on_pause(failed_attempts)


@contextmanager
def row_lock_held(backend: str, db_target: str, session_id: str) -> Iterator[Callable[[], None]]:
    """Hold a write lock on the session's row (SQLite: on the file) until the yielded release is called."""
    if backend == "sqlite":
        raw = sqlite3.connect(db_target, isolation_level=None, check_same_thread=False)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: raw.in_transaction and raw.execute("ROLLBACK")
        finally:
            raw.close()
        return
    with raw_connection(db_target) as connection:
        transaction = connection.begin()
        table = SessionRow.__table__
        connection.execute(sa.update(table).where(table.c.id == session_id).values(title="held"))
        yield lambda: transaction.is_active and transaction.rollback()


@contextmanager
def lock_held_by_another_thread(backend: str, db_target: str, session_id: str) -> Iterator[threading.Event]:
    """Hold the session's row lock in a thread until the block ends (or HOLD_SECONDS pass).

    Yields an event set once the holder has let go: a call that returns while it
    is still clear did not wait for the holder.
    """
    held, let_go, released = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        try:
            with row_lock_held(backend, db_target, session_id) as release:
                held.set()
                let_go.wait(HOLD_SECONDS)
                release()
                released.set()
        except BaseException as error:  # reported below
            failures.append(error)
            held.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(HOLD_SECONDS)
        assert failures == []
        yield released
    finally:
        let_go.set()
        holder.join()
    assert failures == []


def test_a_write_behind_a_held_lock_gives_storage_busy_once_lock_timeout_passes(backend, db_target, make_manager):
    manager = make_manager(lock_timeout=1)
    session_id = manager.create_session(Channel.MAIN, "k")
    with lock_held_by_another_thread(backend, db_target, session_id) as released:
        with pytest.raises(StorageBusy, match=r"lock_timeout 1 s") as raised:
            manager.touch_session(session_id)
        assert not released.is_set(), "the call waited for the lock holder instead of giving up"
    assert isinstance(raised.value.__cause__, DBAPIError)
    assert manager.get_session(session_id).message_count == 0
    manager.touch_session(session_id)
    assert manager.get_session(session_id).message_count == 1


def test_an_adk_append_behind_a_held_lock_writes_nothing_and_leaves_its_connection_transactional(
    backend, db_target, make_manager
):
    # The second append is at the revision the store last wrote: on PostgreSQL one statement run as a
    # transaction of its own (autocommit), which must be switched off again when it fails.
    manager = make_manager(lock_timeout=1, pool_size=1)
    store = AdkStore(manager)
    created = store.create_session("app", "ada", session_id="s")
    first = store.append_event("app", "ada", "s", _adk_event("one"), **_read_at(created.revision))
    with lock_held_by_another_thread(backend, db_target, created.session_id), pytest.raises(StorageBusy):
        store.append_event("app", "ada", "s", _adk_event("two"), **_read_at(first.revision))
    if backend == "postgresql":
        pooled = manager._transactions.engine.raw_connection()  # pool_size=1: the connection the append used
        try:
            assert pooled.dbapi_connection.autocommit is False
        finally:
            pooled.close()
    stored = store.get_session("app", "ada", "s")
    assert (stored.revision, stored.state, len(stored.events)) == (1, {"n": "one"}, 1)
    assert [m.content for m in manager.get_messages(created.session_id)] == ["one"]
    again = store.append_event("app", "ada", "s", _adk_event("two"), **_read_at(first.revision))
    assert again.revision == 2
    assert [m.content for m in manager.get_messages(created.session_id)] == ["one", "two"]


def _adk_event(text: str) -> AdkEvent:
    return AdkEvent(id=text, timestamp=10.0**9, data="{}", state_delta={"n": text}, messages=[AdkMessage("user", text)])


def _read_at(revision: int) -> dict[str, Any]:
    return {"revision": revision, "last_update_time": 0.0, "last_event_id": None}


@pytest.mark.parametrize("lock_timeout", [0, -1, float("nan"), float("inf"), 10**9, "30", True, None])
def test_a_lock_timeout_that_bounds_nothing_is_invalid_input(tmp_path, lock_timeout):
    with pytest.raises(InvalidInput, match="lock_timeout"):
        SessionManager(tmp_path / "sessions.db", lock_timeout=lock_timeout)
    assert not (tmp_path / "sessions.db").exists()


@contextmanager
def deadlock_on_every_session_update(manager: SessionManager) -> Iterator[None]:
    """Make every UPDATE of a session fail as a MariaDB deadlock does, before it reaches the database."""

    def fail(_conn, _cursor, statement, parameters, *_args) -> None:
        if statement.startswith("UPDATE session_metadata"):
            raise OperationalError(statement, parameters, driver_error(DEADLOCK))

    sa.event.listen(manager._engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        sa.event.remove(manager._engine, "before_cursor_execute", fail)


def test_a_call_failing_transiently_on_every_attempt_gives_storage_busy_after_the_policys_attempts(make_manager):
    pauses: list[int] = []
    manager = make_manager(retry=ObservedPolicy(attempts=3, on_pause=pauses.append))
    session_id = manager.create_session(Channel.MAIN, "k")
    with deadlock_on_every_session_update(manager), pytest.raises(StorageBusy, match="3 attempts") as raised:
        manager.touch_session(session_id)
    assert pauses == [1, 2]
    assert isinstance(raised.value.__cause__, DBAPIError)
    assert manager.get_session(session_id).message_count == 0
    manager.touch_session(session_id)
    assert manager.get_session(session_id).message_count == 1


def test_the_default_policy_retries_a_transient_failure_until_lock_timeout_not_a_fixed_count(make_manager):
    """Galera's certification conflicts on a hot row can fail many times in a row: only lock_timeout ends them."""
    assert RetryPolicy().attempts is None
    pauses: list[int] = []

    def pause(failures: int) -> None:
        pauses.append(failures)
        time.sleep(0.01)

    manager = make_manager(lock_timeout=1, retry=ObservedPolicy(on_pause=pause))
    session_id = manager.create_session(Channel.MAIN, "k")
    with deadlock_on_every_session_update(manager), pytest.raises(StorageBusy, match=r"lock_timeout 1 s"):
        manager.touch_session(session_id)
    assert len(pauses) > 8, "the retries stopped at a fixed count before lock_timeout"


def test_a_transient_failure_that_clears_after_many_attempts_costs_the_caller_nothing(make_manager):
    manager = make_manager(retry=ObservedPolicy())
    session_id = manager.create_session(Channel.MAIN, "k")
    failures = iter(range(20))

    def fail_twenty_times(_conn, _cursor, statement, parameters, *_args) -> None:
        if statement.startswith("UPDATE session_metadata") and next(failures, None) is not None:
            raise OperationalError(statement, parameters, driver_error(DEADLOCK))

    sa.event.listen(manager._engine, "before_cursor_execute", fail_twenty_times)
    try:
        manager.touch_session(session_id)
    finally:
        sa.event.remove(manager._engine, "before_cursor_execute", fail_twenty_times)
    assert manager.get_session(session_id).message_count == 1


@pytest.mark.parametrize("attempts", [0, -1, 1.5, "8", True])
def test_a_retry_policy_with_a_count_that_bounds_nothing_is_invalid_input(attempts):
    with pytest.raises(InvalidInput, match="attempts"):
        RetryPolicy(attempts=attempts)


# -- real deadlocks (servers) -------------------------------------------------------------------------

#: Rows the other transaction also updates: MariaDB rolls back the transaction that
#: changed fewer rows, so the library's one-row attempt is the deadlock's victim.
WEIGHT_ROWS = 10


def test_a_real_deadlock_is_retried_and_the_call_succeeds_once(backend, db_target, make_manager):
    """The library locks B then A, another transaction A then B: the database aborts the library's attempt."""
    if backend == "sqlite":
        pytest.skip("SQLite runs one writer at a time: two transactions never hold locks on each other")
    pauses: list[int] = []
    manager = make_manager(retry=ObservedPolicy(on_pause=pauses.append))
    first, second = (manager.create_session(Channel.MAIN, key) for key in ("a", "b"))
    weight = [manager.create_session(Channel.MAIN, f"weight-{n}") for n in range(WEIGHT_ROWS)]
    table = SessionRow.__table__
    other_failures: list[BaseException] = []
    threads: list[threading.Thread] = []
    with raw_connection(db_target) as other:
        if backend == "postgresql":
            # PostgreSQL aborts the waiter whose deadlock_timeout (1 s) expires first: ours.
            other.exec_driver_sql("SET deadlock_timeout = '60s'")
        other.execute(sa.update(table).where(table.c.id == first).values(title="other holds a"))
        other.execute(sa.update(table).where(table.c.id.in_(weight)).values(title="weight"))

        def other_takes_second() -> None:
            try:
                # Waits for the library's lock on B, closing the cycle; gets it once the
                # library's attempt is rolled back.
                other.execute(sa.update(table).where(table.c.id == second).values(title="other holds b"))
                other.commit()
            except BaseException as error:  # reported below
                other_failures.append(error)

        def then_take_first(conn, _cursor, statement, *_args) -> None:
            if threads or not statement.startswith("UPDATE session_metadata"):
                return
            threads.append(threading.Thread(target=other_takes_second))
            threads[0].start()
            with closing(conn.connection.dbapi_connection.cursor()) as cursor:
                cursor.execute("UPDATE session_metadata SET title = 'library holds a' WHERE id = %s", (first,))

        sa.event.listen(manager._engine, "after_cursor_execute", then_take_first)
        try:
            manager.touch_session(second)
        finally:
            sa.event.remove(manager._engine, "after_cursor_execute", then_take_first)
            for thread in threads:
                thread.join()
    assert other_failures == []
    assert pauses == [1], "the deadlock was not retried exactly once"
    assert manager.get_session(second).message_count == 1
    assert manager.get_session(second).title == "other holds b"
    assert manager.get_session(first).title == "other holds a"
