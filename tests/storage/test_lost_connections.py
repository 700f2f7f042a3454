"""A connection lost around a commit gives our own errors, never a raw driver one, and the next call works."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from starpod_session import Channel, StarpodSessionError, StorageError
from starpod_session._driver import statements
from starpod_session._driver.transaction import DriverTransaction
from starpod_session.backends import _server as engine
from starpod_session.storage import transactions
from starpod_session.storage.transactions import _packet_hint

from ..backends import configured_server_urls

LOST = (2013, "Lost connection to server during query")
REFUSED = (1153, "Got a packet bigger than 'max_allowed_packet' bytes")


def connection_id(backend: str, dbapi_connection) -> int:
    return dbapi_connection.info.backend_pid if backend == "postgresql" else dbapi_connection.thread_id()


@pytest.fixture
def kill_connection(backend: str) -> Iterator[Callable[[object], None]]:
    """Kill a server connection from another session, as an administrator or a failover would."""
    if backend == "sqlite":
        pytest.skip("SQLite has no connection to lose")
    url = configured_server_urls()[backend]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")

    def kill(dbapi_connection: object) -> None:
        victim = connection_id(backend, dbapi_connection)
        with admin.connect() as connection:
            if backend == "postgresql":
                connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
                gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = :id"
            else:
                connection.execute(sa.text(f"KILL {int(victim)}"))
                gone = "SELECT count(*) FROM information_schema.processlist WHERE id = :id"
            # Wait for the server to have closed it (a condition, not a sleep).
            while connection.execute(sa.text(gone), {"id": victim}).scalar_one():
                pass

    yield kill
    admin.dispose()


def once(action: Callable[..., None]) -> Callable[..., None]:
    done: list[bool] = []

    def first_time_only(*args: object) -> None:
        if not done:
            done.append(True)
            action(*args)

    return first_time_only


CALLS = {
    "save_message": lambda manager, session_id: manager.save_message(session_id, "user", "hello"),
    "session_usage": lambda manager, session_id: manager.session_usage(session_id),
    "get_messages": lambda manager, session_id: manager.get_messages(session_id),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_connection_lost_as_it_goes_back_to_the_pool_raises_nothing_raw(manager, kill_connection, monkeypatch, call):
    session_id = manager.create_session(Channel.MAIN, "k")
    # As if the next call came after the connection sat idle (a server restart takes that
    # long): it is pinged on checkout, found dead and replaced.
    monkeypatch.setattr(engine, "PING_AFTER_IDLE", 0.0)
    # The pool's reset (its "reset" listeners, then SQLAlchemy's own) is the last thing it
    # does with the connection itself: the connection dies then, while the call hands it back.
    kill_on_return = once(lambda dbapi_connection, _record, _state: kill_connection(dbapi_connection))
    sa.event.listen(manager._engine, "reset", kill_on_return)
    try:
        CALLS[call](manager, session_id)  # it committed before the connection went: nothing to report
    except StarpodSessionError:
        pass
    finally:
        sa.event.remove(manager._engine, "reset", kill_on_return)
    CALLS[call](manager, session_id)
    expected = 2 if call == "save_message" else 0
    assert [m.content for m in manager.get_messages(session_id)] == ["hello"] * expected


def statements_run_by(manager, call: Callable[[], object]) -> int:
    """How many statements ``call`` runs."""
    counted: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        counted.append(statement)

    sa.event.listen(manager._engine, "after_cursor_execute", count)
    try:
        call()
    finally:
        sa.event.remove(manager._engine, "after_cursor_execute", count)
    return len(counted)


def test_a_connection_lost_before_the_commit_is_a_storage_error_without_a_packet_hint(manager, kill_connection):
    session_id = manager.create_session(Channel.MAIN, "k")
    statements = statements_run_by(manager, lambda: manager.save_message(session_id, "user", "counted"))
    seen: list[str] = []

    def kill_after_the_last_statement(conn, cursor, statement, parameters, context, executemany):
        # The work is done, its commit comes next: the connection dies in between.
        seen.append(statement)
        if len(seen) == statements:
            kill_connection(conn.connection.dbapi_connection)

    sa.event.listen(manager._engine, "after_cursor_execute", kill_after_the_last_statement)
    try:
        with pytest.raises(StorageError) as raised:
            manager.save_message(session_id, "user", "lost with the connection")
    finally:
        sa.event.remove(manager._engine, "after_cursor_execute", kill_after_the_last_statement)
    # The commit failed: not run again (the client cannot know whether the server committed).
    assert len(seen) == statements
    assert "max_allowed_packet" not in str(raised.value)
    assert [m.content for m in manager.get_messages(session_id)] == ["counted"]
    manager.save_message(session_id, "user", "sent again")
    assert [m.content for m in manager.get_messages(session_id)] == ["counted", "sent again"]


def test_a_connection_lost_before_the_last_statement_runs_the_call_again(manager, kill_connection):
    session_id = manager.create_session(Channel.MAIN, "k")
    statements = statements_run_by(manager, lambda: manager.save_message(session_id, "user", "counted"))
    kill_after_the_first = once(
        lambda conn, *_args: kill_connection(conn.connection.dbapi_connection) if statements > 1 else None
    )
    sa.event.listen(manager._engine, "after_cursor_execute", kill_after_the_first)
    try:
        manager.save_message(session_id, "user", "run again")  # its next statement fails: nothing committed
    finally:
        sa.event.remove(manager._engine, "after_cursor_execute", kill_after_the_first)
    assert [m.content for m in manager.get_messages(session_id)] == ["counted", "run again"]


# The tests above lose the connection from a statement listener, which takes the Core
# path (ARCHITECTURE.md, "The fast path"); these lose it on the unobserved fast path.


def test_on_the_fast_path_a_connection_lost_after_a_statement_runs_the_call_again(
    manager, kill_connection, monkeypatch
):
    session_id = manager.create_session(Channel.MAIN, "k")
    run = statements.Prepared._run
    runners: list[object] = []

    def run_then_lose_the_connection_once(self, connection, *args, **kwargs):
        result = run(self, connection, *args, **kwargs)
        runners.append(connection)
        if len(runners) == 1:
            kill_connection(connection.connection.dbapi_connection)
        return result

    monkeypatch.setattr(statements.Prepared, "_run", run_then_lose_the_connection_once)
    manager.save_message(session_id, "user", "run again")
    monkeypatch.undo()
    assert all(isinstance(runner, DriverTransaction) for runner in runners)
    assert len(runners) > 2  # the first attempt's statements, then the whole call again
    assert [m.content for m in manager.get_messages(session_id)] == ["run again"]


def test_on_the_fast_path_a_connection_lost_at_the_commit_is_a_storage_error(manager, kill_connection, monkeypatch):
    session_id = manager.create_session(Channel.MAIN, "k")
    commit = transactions.driver_commit
    commits: list[object] = []

    def lose_the_connection_then_commit(driver_connection, dialect):
        commits.append(driver_connection)
        kill_connection(driver_connection)
        commit(driver_connection, dialect)

    monkeypatch.setattr(transactions, "driver_commit", lose_the_connection_then_commit)
    with pytest.raises(StorageError):
        manager.save_message(session_id, "user", "lost with the connection")
    monkeypatch.undo()
    assert len(commits) == 1  # not run again: the client cannot know whether the server committed
    manager.save_message(session_id, "user", "next")
    assert [m.content for m in manager.get_messages(session_id)] == ["next"]


@pytest.mark.parametrize(
    ("error", "params", "hinted"),
    [
        (REFUSED, ("small",), True),
        (LOST, ("x" * (2 * 1024 * 1024),), True),
        (LOST, {"content": b"x" * (2 * 1024 * 1024)}, True),
        (LOST, ("small",), False),
        (LOST, None, False),
        ((1205, "Lock wait timeout exceeded"), ("x" * (2 * 1024 * 1024),), False),
    ],
    ids=["refused", "lost-large-text", "lost-large-bytes", "lost-small", "lost-no-parameters", "other-error"],
)
def test_the_packet_size_hint_comes_only_with_packet_size_errors(error, params, hinted):
    hint = _packet_hint(OperationalError("INSERT INTO session_messages ...", params, Exception(*error)))
    assert ("max_allowed_packet" in hint) is hinted


def test_every_pooled_connection_lost_at_once_costs_the_next_calls_nothing(manager, kill_connection):
    # A server restart or failover: every idle connection in the pool is dead.
    # Connections are not pinged before use; the first call that meets a dead one
    # (before its commit) opens new ones and runs again, so no call fails.
    session_id = manager.create_session(Channel.MAIN, "k")
    held = [manager._engine.raw_connection() for _ in range(4)]
    drivers = [pooled.dbapi_connection for pooled in held]
    for pooled in held:
        pooled.close()  # four idle connections in the pool
    for driver in drivers:
        kill_connection(driver)
    for n in range(6):
        manager.save_message(session_id, "user", f"after the restart {n}")
    assert [m.content for m in manager.get_messages(session_id)] == [f"after the restart {n}" for n in range(6)]
