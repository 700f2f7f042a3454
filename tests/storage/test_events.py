"""Which SQLAlchemy engine events a listener on the manager's engine sees, on each path.

ARCHITECTURE.md ("The fast path") documents it: every statement fires
``before_cursor_execute`` / ``after_cursor_execute``, with a ``conn`` that has
``info`` (SQLAlchemy's query-timing recipe works); ``begin``, ``commit`` and
``rollback`` fire for the calls on a ``Connection``, not for the prepared-only
calls, which run on a pooled driver connection (``engine.DriverTransaction``)
with no ``Connection`` to hand a listener, on every backend.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import event

from starpod_session import Channel, SessionManager, SessionNotFound
from starpod_session.engine import DriverTransaction


@pytest.fixture
def events(manager: SessionManager) -> Iterator[Callable[[Callable[[], object]], Counter[str]]]:
    """Run a call with listeners on the manager's engine; returns how often each event fired."""
    seen: Counter[str] = Counter()
    timings: list[float] = []

    # SQLAlchemy's documented query-timing recipe.
    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("query_start_time", []).append(time.time())
        seen["before_cursor_execute"] += 1

    def after_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        timings.append(time.time() - conn.info["query_start_time"].pop(-1))
        seen["after_cursor_execute"] += 1

    listeners = {
        "before_cursor_execute": before_cursor_execute,
        "after_cursor_execute": after_cursor_execute,
        "begin": lambda conn: seen.update(["begin"]),
        "commit": lambda conn: seen.update(["commit"]),
        "rollback": lambda conn: seen.update(["rollback"]),
    }
    for name, listener in listeners.items():
        event.listen(manager._engine, name, listener)

    def run(call: Callable[[], object]) -> Counter[str]:
        seen.clear()
        timings.clear()
        with contextlib.suppress(SessionNotFound):
            call()
        assert len(timings) == seen["after_cursor_execute"]
        return Counter(seen)

    try:
        yield run
    finally:
        for name, listener in listeners.items():
            event.remove(manager._engine, name, listener)


def test_the_query_timing_recipe_works_on_the_fast_path(manager, events):
    session_id = manager.create_session(Channel.MAIN, "k")
    for call in (
        lambda: manager.save_message(session_id, "user", "hello"),
        lambda: manager.get_session(session_id),
        lambda: manager.get_messages(session_id),
        lambda: manager.list_sessions(5),
    ):
        seen = events(call)
        assert seen["before_cursor_execute"] == seen["after_cursor_execute"] >= 1


def test_prepared_only_calls_fire_no_transaction_events_on_any_backend(manager, events):
    session_id = manager.create_session(Channel.MAIN, "k")
    seen = events(lambda: manager.save_message(session_id, "user", "hello"))
    assert (seen["begin"], seen["commit"], seen["rollback"]) == (0, 0, 0)
    assert seen["before_cursor_execute"] == seen["after_cursor_execute"] >= 1
    seen = events(lambda: manager.get_session(session_id))
    assert (seen["begin"], seen["commit"], seen["rollback"]) == (0, 0, 0)
    failed = events(lambda: manager.touch_session("no-such-session"))
    assert (failed["begin"], failed["commit"], failed["rollback"]) == (0, 0, 0)


def test_statement_listeners_of_prepared_work_get_the_driver_transaction(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    conns: list[object] = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        conns.append((conn, context))

    event.listen(manager._engine, "before_cursor_execute", before_cursor_execute)
    try:
        manager.save_message(session_id, "user", "hello")
    finally:
        event.remove(manager._engine, "before_cursor_execute", before_cursor_execute)
    assert conns
    assert all(isinstance(conn, DriverTransaction) and context is None for conn, context in conns)


def test_calls_on_a_connection_fire_transaction_events_on_every_backend(manager, events):
    session_id = manager.create_session(Channel.MAIN, "k")
    seen = events(lambda: manager.session_usage(session_id))
    assert (seen["begin"], seen["commit"], seen["rollback"]) == (1, 1, 0)
    assert seen["before_cursor_execute"] == seen["after_cursor_execute"] >= 1
    failed = events(lambda: manager.delete_session("no-such-session"))
    assert (failed["begin"], failed["commit"], failed["rollback"]) == (1, 0, 1)


def test_search_is_prepared_work(backend, manager, events):
    """search_messages runs on the fast path: one statement on a driver transaction, no Connection events.

    On SQLite a look-up of the messages waiting for the search index comes first, and
    while one waits (the first call) their indexing, then the search
    (``repositories.search.INDEX_BATCH``).
    """
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.save_message(session_id, "user", "deploy the billing service")
    statements = (3, 2) if backend == "sqlite" else (1, 1)
    for call, sent in zip(
        (
            lambda: manager.search_messages("deploy billing"),
            lambda: manager.search_messages("deploy", user_id="nobody", roles=["user"], since="2026-01-01T00:00:00Z"),
        ),
        statements,
        strict=True,
    ):
        seen = events(call)
        assert seen["before_cursor_execute"] == seen["after_cursor_execute"] == sent
        assert (seen["begin"], seen["commit"], seen["rollback"]) == (0, 0, 0)


def test_cost_overview_is_prepared_work(manager, events):
    """cost_overview runs on the fast path: its two statements (usage, tool calls) in one snapshot read,
    on a driver transaction with no Connection events (on every backend)."""
    for call in (
        lambda: manager.cost_overview(),
        lambda: manager.cost_overview("2026-01-01T05:00:00Z", "2026-02-01T00:00:00Z"),
    ):
        seen = events(call)
        assert seen["before_cursor_execute"] == seen["after_cursor_execute"] == 2
        assert (seen["begin"], seen["commit"], seen["rollback"]) == (0, 0, 0)
