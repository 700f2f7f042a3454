"""Which errors are retried, and what the caller gets when retries run out."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError

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
