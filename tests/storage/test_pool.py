"""The connection pool: ``pool_size`` connections, all kept, none waited for while one is free.

Concurrency is shown with a barrier inside the calls (a ``before_cursor_execute``
listener): N calls can only all reach it if N connections are in use at once. No
timings: a pool too small makes the barrier break, not a test slow.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from starpod_session import Channel, InvalidInput, SessionManager, StorageBusy
from starpod_session.backends import _server as engine
from starpod_session.backends.engine import DEFAULT_POOL_SIZE

#: Seconds the threads wait for each other at the barrier before the test fails.
MEET_WITHIN = 20


def meet_inside_a_call(manager: SessionManager, parties: int) -> threading.Barrier:
    """Make each call of ``manager`` wait, holding its connection, until ``parties`` calls are inside."""
    barrier = threading.Barrier(parties, timeout=MEET_WITHIN)

    def wait(_conn, _cursor, statement, *_args):
        if "session_metadata" in statement:
            barrier.wait()

    sa.event.listen(manager._engine, "before_cursor_execute", wait)
    return barrier


def count_connects(manager: SessionManager) -> list[object]:
    """A list that grows by one for every driver connection the manager opens from now on."""
    opened: list[object] = []
    sa.event.listen(manager._engine, "connect", lambda dbapi_connection, _record: opened.append(dbapi_connection))
    return opened


def burst(manager: SessionManager, session_id: str, threads: int) -> None:
    """``threads`` reads at once, each holding its connection until all are inside."""
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _n: manager.get_session(session_id), range(threads)))
    assert all(meta is not None and meta.id == session_id for meta in results)


@pytest.mark.parametrize("pool_size", [3, 8])
def test_n_threads_use_n_connections_at_once_and_keep_them(make_manager, pool_size):
    manager = make_manager(pool_size=pool_size)
    session_id = manager.create_session(Channel.MAIN, "k")
    meet_inside_a_call(manager, pool_size)
    opened = count_connects(manager)
    burst(manager, session_id, pool_size)  # a thread waiting for a connection would break the barrier
    assert len(opened) <= pool_size
    opened.clear()
    burst(manager, session_id, pool_size)
    assert opened == []  # every connection was kept: none closed on return and reopened


def test_the_default_pool_serves_sixteen_threads_without_reconnecting(make_manager):
    assert DEFAULT_POOL_SIZE >= 16
    manager = make_manager()
    session_id = manager.create_session(Channel.MAIN, "k")
    meet_inside_a_call(manager, 16)
    opened = count_connects(manager)
    burst(manager, session_id, 16)
    opened.clear()
    burst(manager, session_id, 16)
    assert opened == []


def test_more_threads_than_connections_wait_for_one_in_turn(make_manager):
    manager = make_manager(pool_size=2)
    session_id = manager.create_session(Channel.MAIN, "k")
    opened = count_connects(manager)
    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda n: manager.save_message(session_id, "user", f"m{n}"), range(60)))
    assert len(set(ids)) == 60
    assert len(opened) <= 2
    assert len(manager.get_messages(session_id)) == 60


def test_a_call_that_waits_for_a_connection_past_lock_timeout_is_storage_busy(make_manager):
    manager = make_manager(pool_size=1, lock_timeout=0.5)
    session_id = manager.create_session(Channel.MAIN, "k")
    inside, release = threading.Event(), threading.Event()

    def hold(_conn, _cursor, statement, *_args):
        if "session_metadata" in statement and threading.current_thread().name == "holder":
            inside.set()
            release.wait(MEET_WITHIN)

    sa.event.listen(manager._engine, "before_cursor_execute", hold)
    holder = threading.Thread(target=manager.get_session, args=(session_id,), name="holder")
    holder.start()
    try:
        assert inside.wait(MEET_WITHIN)
        with pytest.raises(StorageBusy, match=r"pool_size=1") as raised:
            manager.get_session(session_id)
        assert "sqlalchemy" not in str(raised.value).lower()
    finally:
        release.set()
        holder.join()
    assert manager.get_session(session_id) is not None  # the connection came back: served again


@pytest.mark.parametrize("pool_size", [0, -1, True, 1.5, "8", None, 10**6])
def test_a_pool_size_that_is_not_a_sensible_count_is_invalid_input(tmp_path, pool_size):
    with pytest.raises(InvalidInput, match="pool_size"):
        SessionManager(tmp_path / "sessions.db", pool_size=pool_size)
    assert not (tmp_path / "sessions.db").exists()  # refused before anything was created


def test_a_connection_goes_back_to_the_pool_without_a_rollback_after_a_commit_on_mariadb(
    backend, make_manager, monkeypatch
):
    if backend != "mariadb":
        pytest.skip("pymysql alone sends ROLLBACK for a connection with no transaction open")
    import pymysql.connections

    rollbacks: list[object] = []
    rollback = pymysql.connections.Connection.rollback

    def counted(self):
        rollbacks.append(self)
        return rollback(self)

    monkeypatch.setattr(pymysql.connections.Connection, "rollback", counted)
    manager = make_manager(pool_size=1)
    session_id = manager.create_session(Channel.MAIN, "k")
    rollbacks.clear()  # opening the manager rolled back its schema check's reads
    manager.save_message(session_id, "user", "hello")
    manager.get_messages(session_id)
    manager.cost_overview()
    assert rollbacks == []  # committed calls: a round trip saved on each
    # A connection handed back with its transaction open is still rolled back.
    raw = manager._engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("UPDATE session_metadata SET title = 'uncommitted' WHERE id = %s", (session_id,))
    cursor.close()
    raw.close()
    assert len(rollbacks) == 1
    assert manager.get_session(session_id).title == "hello"


def test_a_server_connection_is_pinged_only_after_sitting_idle(backend, make_manager, monkeypatch):
    if backend == "sqlite":
        pytest.skip("SQLite has no connection to lose")
    manager = make_manager(pool_size=1)
    session_id = manager.create_session(Channel.MAIN, "k")
    pings: list[object] = []
    dialect = manager._engine.dialect
    ping = dialect.do_ping
    monkeypatch.setattr(
        dialect, "do_ping", lambda dbapi_connection: pings.append(dbapi_connection) or ping(dbapi_connection)
    )
    for n in range(10):
        manager.save_message(session_id, "user", f"m{n}")
    assert pings == []  # back-to-back calls: the connection was in use a moment ago
    monkeypatch.setattr(engine, "PING_AFTER_IDLE", 0.0)  # as if every call came after a pause
    for n in range(10):
        manager.save_message(session_id, "user", f"again {n}")
    assert len(pings) == 10


def test_a_call_on_a_connection_does_not_wait_for_connections_kept_idle_by_the_fast_path(make_manager):
    # SQLite's fast path keeps connections checked out between calls; a call that
    # needs the pool itself (a Core statement, as session_usage runs) must get one.
    manager = make_manager(pool_size=2, lock_timeout=1)
    session_id = manager.create_session(Channel.MAIN, "k")
    meet_inside_a_call(manager, 2)
    burst(manager, session_id, 2)  # both connections used at once, then kept idle
    assert manager.session_usage(session_id).total_cost_usd == 0
