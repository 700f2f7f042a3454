"""OpenTelemetry spans of our own (``starpod_session/tracing.py``): one span per public call, or nothing.

Each test that records spans gives the manager an SDK ``TracerProvider`` of its own
(``tracer_provider=``), never the process-wide one (``trace.set_tracer_provider``
can be set once per process); what depends on the global provider runs in a
subprocess. Tests needing the SDK skip where it is not installed (the README's plain
test run); the ``tracing-tests`` extra installs it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from starpod_session import Continue, SessionManager, SessionNotFound, UsageRecord
from starpod_session.tracing import DB_SYSTEM_NAME, ERROR_TYPE, SESSION_ID, TRACED_CALLS

from ..backends import needs_packages
from ..docs.markdown import blocks, is_python

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guides" / "tracing.md"


needs_sdk = needs_packages("tracing-tests", "opentelemetry.sdk")

#: Each traced call made with valid arguments on a session ``s`` of channel main, key "k"
#: (user admin) holding one message: the call, and whether its span names ``s``.
CALLS: dict[str, tuple[Callable[[SessionManager, str], object], bool]] = {
    "resolve_session": (lambda m, s: m.resolve_session("main", "k"), True),
    "open_session": (lambda m, s: m.open_session("main", "k"), True),
    "create_session": (lambda m, s: m.create_session("main", "k"), True),
    "touch_session": (lambda m, s: m.touch_session(s), True),
    "set_title_if_empty": (lambda m, s: m.set_title_if_empty(s, "A title"), True),
    "close_session": (lambda m, s: m.close_session(s, "done"), True),
    "mark_read": (lambda m, s: m.mark_read(s, False), True),
    "archive_session": (lambda m, s: m.archive_session(s), True),
    "get_session": (lambda m, s: m.get_session(s), True),
    "session_ids_starting_with": (lambda m, s: m.session_ids_starting_with(s[:4]), False),
    "list_sessions": (lambda m, s: m.list_sessions(10), False),
    "find_open_session": (lambda m, s: m.find_open_session("main", "k"), True),
    "save_message": (lambda m, s: m.save_message(s, "user", "hello world"), True),
    "save_messages": (lambda m, s: m.save_messages(s, [("user", "hi"), ("assistant", "hello")]), True),
    "pop_message": (lambda m, s: m.pop_message(s), True),
    "clear_messages": (lambda m, s: m.clear_messages(s), True),
    "get_messages": (lambda m, s: m.get_messages(s, limit=10), True),
    "get_message_contents": (lambda m, s: m.get_message_contents(s, limit=10), True),
    "export_transcript": (lambda m, s: m.export_transcript(session_id=s), True),  # by keyword
    "record_usage": (lambda m, s: m.record_usage(s, UsageRecord(input_tokens=10, cost_usd=0.01), 1), True),
    "session_usage": (lambda m, s: m.session_usage(s), True),
    "cost_overview": (lambda m, s: m.cost_overview(), False),
    "record_compaction": (lambda m, s: m.record_compaction(s, "auto", 1000, "summary", 3), True),
    "search_messages": (lambda m, s: m.search_messages("hello", session_id=s), True),  # keyword-only
    "delete_session": (lambda m, s: m.delete_session(s), True),
    "forget_user": (lambda m, s: m.forget_user("admin"), False),
    "prune": (lambda m, s: m.prune(timedelta(days=1)), False),
}
#: What a call needs done first (not recorded).
BEFORE: dict[str, Callable[[SessionManager, str], object]] = {
    "export_transcript": lambda m, s: m.close_session(s, "done"),
}


def test_every_public_call_is_traced_and_nothing_else() -> None:
    """A public method added later without an entry in ``TRACED_CALLS`` fails here."""
    public = {name for name, value in vars(SessionManager).items() if callable(value) and not name.startswith("_")}
    assert public - {"close"} == set(TRACED_CALLS)
    assert set(CALLS) == set(TRACED_CALLS)


# -- with a provider of the test's own ---------------------------------------------------


@pytest.fixture
def exporter() -> Any:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def traced(make_manager: Callable[..., SessionManager], provider: Any) -> SessionManager:
    """A manager recording spans into ``exporter``."""
    return make_manager(tracer_provider=provider)


def ours(exporter: Any) -> list[Any]:
    """The finished spans of our scope (an instrumented engine's SQL spans left out), then forgets them."""
    spans = [span for span in exporter.get_finished_spans() if span.instrumentation_scope.name == "starpod_session"]
    exporter.clear()
    return spans


@needs_sdk
@pytest.mark.parametrize("method", sorted(CALLS))
def test_each_public_call_is_one_span_with_its_name_and_attributes(
    traced: SessionManager, exporter: Any, backend: str, method: str
) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    session_id = traced.create_session("main", "k")
    traced.save_message(session_id, "user", "hello world")
    call, names_session = CALLS[method]
    if method in BEFORE:
        BEFORE[method](traced, session_id)
    ours(exporter)

    result = call(traced, session_id)

    [span] = ours(exporter)
    assert span.name == f"starpod_session.{method}"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope.version == __import__("starpod_session").__version__
    assert span.attributes[DB_SYSTEM_NAME] == backend  # sqlite, postgresql, mariadb: the conventions' names
    assert span.attributes.get(SESSION_ID) == (session_id if names_session else None)
    assert ERROR_TYPE not in span.attributes
    assert span.parent is None
    if method == "resolve_session":
        assert result == Continue(session_id)


@needs_sdk
def test_a_failed_call_is_an_error_span_recording_the_exception(traced: SessionManager, exporter: Any) -> None:
    from opentelemetry.trace import StatusCode

    with pytest.raises(SessionNotFound):
        traced.save_message("no-such-session", "user", "hello")

    [span] = ours(exporter)
    assert span.name == "starpod_session.save_message"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "SessionNotFound: session not found: 'no-such-session'"
    assert span.attributes[ERROR_TYPE] == "starpod_session.errors.SessionNotFound"
    assert span.attributes[SESSION_ID] == "no-such-session"
    [recorded] = span.events
    assert recorded.name == "exception"
    assert recorded.attributes["exception.type"] == "starpod_session.errors.SessionNotFound"


@needs_sdk
def test_rejected_arguments_are_recorded_too(traced: SessionManager, exporter: Any) -> None:
    from opentelemetry.trace import StatusCode

    with pytest.raises(ValueError, match="invalid limit"):
        traced.get_messages("s", limit=-1)
    with pytest.raises(ValueError, match="invalid session_id"):
        traced.touch_session(session_id="x" * 256)

    first, second = ours(exporter)
    assert first.status.status_code is second.status.status_code is StatusCode.ERROR
    assert first.attributes[ERROR_TYPE] == second.attributes[ERROR_TYPE] == "starpod_session.errors.InvalidInput"
    assert first.attributes[SESSION_ID] == "s"
    assert SESSION_ID not in second.attributes  # longer than any id the library accepts: not copied


@needs_sdk
def test_the_span_is_current_while_the_call_runs_its_statements(traced: SessionManager, exporter: Any) -> None:
    """So an instrumented engine's SQL spans are children of the call's span: OpenTelemetry's SQLAlchemy
    instrumentation starts them in this listener, in the current context (prepared and Core work alike)."""
    from opentelemetry import trace

    seen: list[int] = []

    def before_cursor_execute(*_args: object) -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    event.listen(traced._engine, "before_cursor_execute", before_cursor_execute)
    try:
        session_id = traced.create_session("main", "k")  # prepared work
        traced.session_ids_starting_with(session_id[:4])  # Core work
    finally:
        event.remove(traced._engine, "before_cursor_execute", before_cursor_execute)
    create, lookup = ours(exporter)
    assert seen and set(seen) == {create.context.span_id, lookup.context.span_id}


@needs_sdk
def test_a_call_inside_an_application_span_is_its_child(traced: SessionManager, exporter: Any, provider: Any) -> None:
    with provider.get_tracer("app").start_as_current_span("handle request") as request:
        traced.list_sessions(5)
    [span] = ours(exporter)
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id


@needs_sdk
def test_wrappers_keep_the_methods_names_and_documentation(traced: SessionManager) -> None:
    for name in TRACED_CALLS:
        assert name in vars(traced)  # an instance attribute shadowing the class's method
        wrapper, plain = getattr(traced, name), getattr(SessionManager, name)
        assert wrapper.__name__ == name and wrapper.__doc__ == plain.__doc__


@needs_sdk
def test_an_explicit_no_op_provider_binds_nothing(make_manager: Callable[..., SessionManager]) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    manager = make_manager(tracer_provider=NoOpTracerProvider())
    assert not set(TRACED_CALLS) & set(vars(manager))


# -- the global provider, in a process of its own -----------------------------------------


#: What every such process starts with: ``assert_plain(manager)`` asserts that a manager bound
#: nothing, its methods being the class's functions.
_PREAMBLE = """
import sys
from starpod_session import SessionManager
from starpod_session.tracing import TRACED_CALLS

def assert_plain(manager):
    for name in TRACED_CALLS:
        assert name not in vars(manager), name
        assert getattr(manager, name).__func__ is getattr(SessionManager, name), name
"""


def run_python(code: str, *args: str) -> str:
    """Run ``code`` after ``_PREAMBLE`` in a fresh interpreter (in the checkout); its stdout."""
    completed = subprocess.run(
        [sys.executable, "-c", _PREAMBLE + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_without_opentelemetry_nothing_is_bound_or_imported(db_target: str) -> None:
    """The default: the class's plain methods run, and ``opentelemetry`` is not imported (installed or not)."""
    out = run_python(
        """
        with SessionManager(sys.argv[1]) as manager:
            assert_plain(manager)
            manager.list_sessions(1)
        print(sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry"))
        """,
        db_target,
    )
    assert out.strip() == "[]"


@needs_sdk
def test_an_imported_api_without_a_configured_provider_binds_nothing(db_target: str) -> None:
    run_python(
        """
        from opentelemetry import trace
        trace.get_tracer_provider()  # the API's default proxy
        with SessionManager(sys.argv[1]) as manager:
            assert_plain(manager)
        """,
        db_target,
    )


@needs_sdk
def test_the_global_provider_is_used_by_managers_created_after_it_was_set(db_target: str, backend: str) -> None:
    out = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        before = SessionManager(sys.argv[1])  # created before the provider: stays plain (documented)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        with before, SessionManager(sys.argv[1]) as after:
            assert_plain(before)
            before.list_sessions(1)
            after.get_session("s-1")
        [span] = exporter.get_finished_spans()
        print(span.name, span.attributes["db.system.name"], span.attributes["starpod_session.session_id"])
        """,
        db_target,
    )
    assert out.split() == ["starpod_session.get_session", backend, "s-1"]


@needs_sdk
def test_the_tracing_guide_samples_run() -> None:
    """The guide's samples set the global provider, so ``tests/docs`` skips them; they run here, in a process
    of their own, in order in one namespace."""
    samples = [block.code for block in blocks(GUIDE) if is_python(block)]
    assert samples
    run_python(
        """
        import os, sys, tempfile
        os.chdir(tempfile.mkdtemp())
        namespace = {"__name__": "__sample__"}
        for code in sys.argv[1:]:
            exec(compile(code, "docs/guides/tracing.md", "exec"), namespace)
        """,
        *samples,
    )
