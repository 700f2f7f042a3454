"""Which SQLAlchemy engine events a listener sees, and what it gets: on both paths, on every backend.

ARCHITECTURE.md ("The fast path") documents it. While nothing but the library
listens to the engine's connection events, the hot calls run on a pooled driver
connection with no ``Connection`` around it: there is nobody to fire an event
for. Once a listener is attached (to the manager's engine or to ``Engine``
itself, before or after the manager was created), and always with
``fast_path=False``, every call runs on a ``Connection`` and its statements
through SQLAlchemy, so listeners get what SQLAlchemy promises them: the
``Connection`` (``engine``, ``dialect``, ``info``, ``in_transaction()``), an
execution context that takes attributes, rewritten statements (``retval=True``),
``handle_error``, and the connection and transaction events. The prepared
statements run as ``Connection.exec_driver_sql`` runs a statement, so, as
SQLAlchemy documents for it, ``before_execute`` / ``after_execute`` do not fire
for them. The listeners below are written the way OpenTelemetry's and Sentry's
SQLAlchemy integrations write theirs.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import Engine, event

from starpod_session import Channel, SessionManager, SessionNotFound, StorageError, UsageRecord

EVENTS = ("engine_connect", "begin", "commit", "rollback")


def every_public_call(manager: SessionManager) -> list[tuple[str, Callable[[], object]]]:
    """Each public call of the manager once, in an order in which each succeeds."""
    session_id = manager.create_session(Channel.TELEGRAM, "chat", user_id="alice")
    return [
        ("open_session", lambda: manager.open_session(Channel.MAIN, "k")),
        ("resolve_session", lambda: manager.resolve_session(Channel.MAIN, "k")),
        ("create_session", lambda: manager.create_session(Channel.MAIN, "k2")),
        ("touch_session", lambda: manager.touch_session(session_id)),
        ("set_title_if_empty", lambda: manager.set_title_if_empty(session_id, "Title")),
        ("save_message", lambda: manager.save_message(session_id, "user", "deploy the billing service")),
        ("get_messages", lambda: manager.get_messages(session_id)),
        ("get_messages(limit)", lambda: manager.get_messages(session_id, 5)),
        ("record_usage", lambda: manager.record_usage(session_id, UsageRecord(1, 2, cost_usd=0.5, model="m"), turn=1)),
        ("session_usage", lambda: manager.session_usage(session_id)),
        ("record_compaction", lambda: manager.record_compaction(session_id, "auto", 10, "summary", 1)),
        ("mark_read", lambda: manager.mark_read(session_id, False)),
        ("archive_session", lambda: manager.archive_session(session_id, False)),
        ("get_session", lambda: manager.get_session(session_id)),
        ("session_ids_starting_with", lambda: manager.session_ids_starting_with(session_id[:4])),
        ("list_sessions", lambda: manager.list_sessions(5, user_id="alice", is_read=False)),
        ("cost_overview", lambda: manager.cost_overview()),
        ("cost_overview(range)", lambda: manager.cost_overview("2026-01-01T05:00:00Z", datetime.now(timezone.utc))),
        ("search_messages", lambda: manager.search_messages("deploy billing")),
        ("close_session", lambda: manager.close_session(session_id, "done")),
        ("export_transcript", lambda: manager.export_transcript(session_id)),
        ("prune", lambda: manager.prune(datetime(2000, 1, 1, tzinfo=timezone.utc))),
        ("delete_session", lambda: manager.delete_session(session_id)),
        ("forget_user", lambda: manager.forget_user("alice")),
    ]


class TracerLike:
    """Listeners as OpenTelemetry's and Sentry's integrations write them.

    They read the ``Connection`` (``engine``, ``dialect``, ``info``,
    ``in_transaction()``), keep their span on the execution context between
    ``before_cursor_execute`` and ``after_cursor_execute``, and close it in
    ``handle_error`` through the exception context.
    """

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.contexts: list[object] = []
        self.errors: list[tuple[str, object]] = []

    def before_cursor_execute(self, conn, cursor, statement, parameters, context, executemany):
        assert isinstance(conn.engine, Engine)
        assert conn.dialect.name and conn.in_transaction() in (True, False)
        conn.info.setdefault("started", []).append(time.perf_counter())
        context._tracer_span = (statement, conn.engine.url.get_backend_name())
        self.contexts.append(context)
        self.seen["before_cursor_execute"] += 1

    def after_cursor_execute(self, conn, cursor, statement, parameters, context, executemany):
        assert context._tracer_span[0] == statement
        conn.info["started"].pop()
        self.seen["after_cursor_execute"] += 1

    def handle_error(self, exception_context):
        span = getattr(exception_context.execution_context, "_tracer_span", None)
        self.errors.append((exception_context.statement, span))
        self.seen["handle_error"] += 1

    def count(self, name):
        return lambda *args, **kwargs: self.seen.update([name])

    @contextlib.contextmanager
    def listening(self, target: object) -> Iterator[TracerLike]:
        listeners = {
            "before_cursor_execute": self.before_cursor_execute,
            "after_cursor_execute": self.after_cursor_execute,
            "handle_error": self.handle_error,
            **{name: self.count(name) for name in EVENTS},
        }
        for name, listener in listeners.items():
            event.listen(target, name, listener)
        try:
            yield self
        finally:
            for name, listener in listeners.items():
                event.remove(target, name, listener)


@pytest.fixture(params=[True, False], ids=["fast_path", "core_only"])
def any_path_manager(request: pytest.FixtureRequest, make_manager: Callable[..., SessionManager]) -> SessionManager:
    return make_manager(fast_path=request.param)


@pytest.mark.parametrize("where", ["engine", "Engine class"])
def test_listeners_written_as_tracers_write_them_see_every_call_on_both_paths(any_path_manager, where):
    manager = any_path_manager
    calls = every_public_call(manager)
    target = manager._engine if where == "engine" else Engine
    with TracerLike().listening(target) as tracer:
        for name, call in calls:
            tracer.seen.clear()
            tracer.contexts.clear()
            call()
            seen = tracer.seen
            assert seen["before_cursor_execute"] == seen["after_cursor_execute"] >= 1, name
            assert None not in tracer.contexts, name
            assert seen["begin"] == seen["commit"] >= 1, name
            assert seen["rollback"] == seen["handle_error"] == 0, name
            assert seen["engine_connect"] >= 1, name


def test_a_listener_attached_after_the_manager_opened_sees_prepared_calls(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.save_message(session_id, "user", "first")  # the fast path, unobserved
    with TracerLike().listening(manager._engine) as tracer:
        manager.save_message(session_id, "user", "second")
        manager.get_messages(session_id)
    assert tracer.seen["before_cursor_execute"] >= 2
    assert None not in tracer.contexts


def test_the_query_timing_recipe_works(manager):
    """SQLAlchemy's documented query-timing recipe, on the calls that run prepared statements."""
    session_id = manager.create_session(Channel.MAIN, "k")
    timings: list[float] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("query_start_time", []).append(time.time())

    def after(conn, cursor, statement, parameters, context, executemany):
        timings.append(time.time() - conn.info["query_start_time"].pop(-1))

    event.listen(manager._engine, "before_cursor_execute", before)
    event.listen(manager._engine, "after_cursor_execute", after)
    try:
        for call in (
            lambda: manager.save_message(session_id, "user", "hello"),
            lambda: manager.get_session(session_id),
            lambda: manager.get_messages(session_id),
            lambda: manager.list_sessions(5),
        ):
            timings.clear()
            call()
            assert timings
    finally:
        event.remove(manager._engine, "before_cursor_execute", before)
        event.remove(manager._engine, "after_cursor_execute", after)


def _rewrite(comment: str) -> Callable[..., tuple[str, object]]:
    def rewrite(conn, cursor, statement, parameters, context, executemany):
        return f"{statement} /* {comment} */", parameters

    return rewrite


def test_a_rewriting_listener_s_statement_is_the_one_that_runs(any_path_manager):
    manager = any_path_manager
    session_id = manager.create_session(Channel.MAIN, "k")
    ran: list[str] = []
    rewrite = _rewrite("traced")
    event.listen(manager._engine, "before_cursor_execute", rewrite, retval=True)
    event.listen(manager._engine, "after_cursor_execute", lambda c, cur, statement, *rest: ran.append(statement))
    try:
        manager.save_message(session_id, "user", "hello")
        assert [message.content for message in manager.get_messages(session_id)] == ["hello"]
    finally:
        event.remove(manager._engine, "before_cursor_execute", rewrite)
    assert ran and all(statement.endswith("/* traced */") for statement in ran)


def test_a_statement_a_listener_breaks_fires_handle_error_and_raises_ours(any_path_manager):
    """What the driver ran is what the listener made of it: broken SQL fails, handle_error sees it."""
    manager = any_path_manager
    session_id = manager.create_session(Channel.MAIN, "k")

    def break_inserts(conn, cursor, statement, parameters, context, executemany):
        return statement.replace("INSERT INTO", "INSERT INTOO"), parameters

    with TracerLike().listening(manager._engine) as tracer:
        event.listen(manager._engine, "before_cursor_execute", break_inserts, retval=True)
        try:
            with pytest.raises(StorageError, match="database error"):
                manager.save_message(session_id, "user", "hello")
        finally:
            event.remove(manager._engine, "before_cursor_execute", break_inserts)
    [(statement, span)] = tracer.errors
    assert "INSERT INTOO" in statement  # what the driver refused: the rewritten statement
    assert span is not None and span[0] == statement.replace("INTOO", "INTO")  # the tracer's, set before it
    assert tracer.seen["rollback"] == 1 and tracer.seen["commit"] == 0
    assert manager.get_messages(session_id) == []


def test_a_listener_s_own_exception_reaches_the_caller_and_nothing_is_written(any_path_manager):
    manager = any_path_manager
    session_id = manager.create_session(Channel.MAIN, "k")

    class ListenerSaysNo(Exception):
        pass

    def refuse_inserts(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT"):
            raise ListenerSaysNo(statement)

    event.listen(manager._engine, "before_cursor_execute", refuse_inserts)
    try:
        with pytest.raises(ListenerSaysNo):
            manager.save_message(session_id, "user", "hello")
    finally:
        event.remove(manager._engine, "before_cursor_execute", refuse_inserts)
    assert manager.get_messages(session_id) == []
    assert manager.get_session(session_id).message_count == 0


def test_a_failed_call_rolls_back_and_fires_rollback(any_path_manager):
    manager = any_path_manager
    with TracerLike().listening(manager._engine) as tracer, pytest.raises(SessionNotFound):
        manager.touch_session("no-such-session")
    assert (tracer.seen["begin"], tracer.seen["commit"], tracer.seen["rollback"]) == (1, 0, 1)


def test_without_listeners_the_hot_calls_open_no_connection(manager, monkeypatch):
    """The fast path: no ``Connection`` at all (its bookkeeping costs more than a SQLite look-up)."""
    session_id = manager.create_session(Channel.MAIN, "k")

    def no_connection(*args, **kwargs):
        raise AssertionError("a Connection was opened")

    monkeypatch.setattr(Engine, "connect", no_connection)  # the class: reads run on engines with options
    manager.save_message(session_id, "user", "deploy the billing service")
    manager.get_session(session_id)
    manager.get_messages(session_id)
    manager.list_sessions(5)
    manager.search_messages("deploy")
    manager.cost_overview()
    manager.open_session(Channel.MAIN, "k")


def test_fast_path_false_takes_the_core_path_with_nothing_listening(make_manager, monkeypatch):
    manager = make_manager(fast_path=False)
    session_id = manager.create_session(Channel.MAIN, "k")
    opened: list[object] = []
    connect = Engine.connect

    def counting_connect(self, *args, **kwargs):
        opened.append(True)
        return connect(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "connect", counting_connect)  # the class: reads run on engines with options
    manager.save_message(session_id, "user", "hello")
    manager.get_session(session_id)
    assert len(opened) == 2


@pytest.mark.parametrize("value", [1, "yes", None])
def test_fast_path_must_be_a_bool(tmp_path, value):
    from starpod_session import InvalidInput

    with pytest.raises(InvalidInput, match="fast_path"):
        SessionManager(tmp_path / "s.db", fast_path=value)
    assert not (tmp_path / "s.db").exists()
