"""Which errors are retried, and what the caller gets when retries run out."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from starpod_session import Channel, RetryPolicy, SessionManager, StorageBusy
from starpod_session import engine as engine_module
from starpod_session.engine import create_storage_engine, to_url
from starpod_session.models import SessionRow
from starpod_session.retry import is_transient

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

#: How long one attempt waits for a lock here, instead of the production seconds.
SHORT_LOCK_WAIT = {
    "sqlite": {},
    "postgresql": {"options": "-c lock_timeout=50"},
    "mariadb": {"init_command": "SET SESSION innodb_lock_wait_timeout = 1"},  # its minimum, in seconds
}


@attrs.frozen
class ObservedPolicy(RetryPolicy):
    """Retries without waiting, calling ``on_pause`` (with the failures so far) instead."""

    on_pause: Callable[[int], None] = attrs.field(default=lambda failures: None, kw_only=True)

    def pause(self, failed_attempts: int) -> None:
        self.on_pause(failed_attempts)


@pytest.fixture
def impatient_manager(backend, db_target, tmp_path, monkeypatch) -> Iterator[Callable[[RetryPolicy], SessionManager]]:
    """Managers whose every attempt gives up on a held lock quickly."""
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    target = to_url(db_target).update_query_dict(SHORT_LOCK_WAIT[backend])
    opened: list[SessionManager] = []

    def make(retry: RetryPolicy) -> SessionManager:
        opened.append(SessionManager(target, tmp_path / "sessions", retry=retry))
        return opened[-1]

    yield make
    for manager in opened:
        manager.close()


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
    engine = create_storage_engine(to_url(db_target))
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            table = SessionRow.__table__
            connection.execute(sa.update(table).where(table.c.id == session_id).values(title="held"))
            yield lambda: transaction.is_active and transaction.rollback()
    finally:
        engine.dispose()


def test_a_lock_held_through_every_attempt_raises_storage_busy_and_writes_nothing(
    backend, db_target, impatient_manager
):
    pauses: list[int] = []
    manager = impatient_manager(ObservedPolicy(attempts=3, on_pause=pauses.append))
    session_id = manager.create_session(Channel.MAIN, "k")
    with row_lock_held(backend, db_target, session_id) as release:
        with pytest.raises(StorageBusy, match="3 attempts") as raised:
            manager.touch_session(session_id)
        release()
    assert pauses == [1, 2]
    assert isinstance(raised.value.__cause__, DBAPIError)
    assert manager.get_session(session_id).message_count == 0
    manager.touch_session(session_id)
    assert manager.get_session(session_id).message_count == 1


def test_a_lock_released_between_attempts_lets_the_call_succeed_once(backend, db_target, impatient_manager):
    held: list[Callable[[], None]] = []
    manager = impatient_manager(ObservedPolicy(attempts=3, on_pause=lambda failures: held[0]()))
    session_id = manager.create_session(Channel.MAIN, "k")
    with row_lock_held(backend, db_target, session_id) as release:
        held.append(release)
        manager.save_message(session_id, "user", "queued behind the lock")
        manager.touch_session(session_id)
    assert [m.content for m in manager.get_messages(session_id)] == ["queued behind the lock"]
    assert manager.get_session(session_id).message_count == 1
