"""The library under real tracing integrations (issue #26, point 3), on every backend.

A tracer hooks SQLAlchemy's engine events and reads what SQLAlchemy hands its
listeners: ``conn.engine``, an execution context to keep its span on, a
``before_cursor_execute`` return value that rewrites the statement. Three users of
those, each with every public call (``calls.py``):

- OpenTelemetry's SQLAlchemy instrumentation (``SQLAlchemyInstrumentor``, which wraps
  ``sqlalchemy.create_engine``; instrumented before the manager is created and
  uninstrumented at teardown): every call succeeds and leaves database spans;
- Sentry's ``SqlalchemyIntegration`` (in a process of its own: ``sentry_child.py``
  says why): every call succeeds and leaves ``db`` spans in the transaction;
- a listener that appends a comment to each statement, sqlcommenter's way: the
  driver runs the rewritten statement.

Each part skips, naming the extra to install (``tracing-tests``), where its
packages are missing (the README's test run and the lowest-SQLAlchemy run of
``.ci/run``); ``.ci/run`` installs them and runs this folder on the three backends.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine, event

from starpod_session import SessionManager

from ..backends import needs_packages
from .calls import ALL_CALLS, ISSUE_CALLS, run_public_calls

#: The checkout's top folder, where ``python -m tests.integrations.sentry_child`` runs.
TOP = Path(__file__).resolve().parents[2]

#: The ``db.system`` a tracer reports for each backend (from the engine's dialect name:
#: ``mysql`` for a ``mysql+pymysql://`` URL, ``mariadb`` for a ``mariadb+pymysql://`` one).
DB_SYSTEMS = {"sqlite": {"sqlite"}, "postgresql": {"postgresql"}, "mariadb": {"mysql", "mariadb"}}

# On SQLAlchemy 2.1 OpenTelemetry's instrumentation needs greenlet: it also wraps
# create_async_engine, whose module SQLAlchemy 2.1 imports only with greenlet.
needs_opentelemetry = needs_packages(
    "tracing-tests", "opentelemetry.sdk.trace", "opentelemetry.instrumentation.sqlalchemy", "greenlet"
)
needs_sentry = needs_packages("tracing-tests", "sentry_sdk")


#: What OpenTelemetry's instrumentation wraps, as they were before any test of this module.
UNWRAPPED = (sqlalchemy.create_engine, sqlalchemy.engine.create_engine, Engine.connect)


@pytest.fixture(autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """No test of this module leaves a wrapper on SQLAlchemy for the tests after it (listeners: see each test)."""
    yield
    now = (sqlalchemy.create_engine, sqlalchemy.engine.create_engine, Engine.connect)
    assert all(a is b for a, b in zip(now, UNWRAPPED, strict=True)), "SQLAlchemy is still instrumented"


# --- OpenTelemetry ---------------------------------------------------------------------------


@pytest.fixture
def opentelemetry_spans(make_manager: Callable[..., SessionManager]) -> Iterator[Any]:
    """SQLAlchemy instrumented by OpenTelemetry into an in-memory exporter, for the duration of a test.

    Asks for ``make_manager`` first, so the test's database is ready before
    instrumenting; the test creates its manager afterwards, as an application does.
    """
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = SQLAlchemyInstrumentor()
    # The instrumentation declares SQLAlchemy >= 1.0, < 2.1 and, outside that range, logs
    # an error and instruments nothing: on 2.1 the check is skipped (the test then proves
    # that spans were recorded, so an instrumentation that did nothing cannot pass).
    instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def _db_attribute(attributes: Any, *names: str) -> Any:
    """The first of ``names`` the span has: the instrumentation writes the old semantic-convention
    names (``db.statement``, ``db.system``), the new ones (``db.query.text``, ``db.system.name``) or
    both, as ``OTEL_SEMCONV_STABILITY_OPT_IN`` says."""
    return next((attributes[name] for name in names if name in attributes), None)


@needs_opentelemetry
def test_opentelemetry_traces_every_public_call(backend, make_manager, opentelemetry_spans):
    from opentelemetry.trace import SpanKind, StatusCode

    manager = make_manager()
    traced: dict[str, list[str]] = {}

    @contextlib.contextmanager
    def each(name: str) -> Iterator[None]:
        opentelemetry_spans.clear()
        yield
        statements = []
        for span in opentelemetry_spans.get_finished_spans():
            statement = _db_attribute(span.attributes, "db.query.text", "db.statement")
            if statement is None:
                continue  # the "connect" span of Engine.connect
            assert span.kind == SpanKind.CLIENT
            assert span.status.status_code != StatusCode.ERROR, (name, statement, span.status.description)
            assert _db_attribute(span.attributes, "db.system.name", "db.system") in DB_SYSTEMS[backend]
            statements.append(statement)
        traced[name] = statements

    run_public_calls(manager, each)
    untraced = [name for name in ALL_CALLS if not traced.get(name)]
    assert not untraced, f"calls that left no database span: {untraced}"
    assert set(ISSUE_CALLS) <= set(traced)
    assert any(statement.lstrip().upper().startswith("INSERT") for statement in traced["save_message"])


# --- Sentry ------------------------------------------------------------------------------------


@needs_sentry
def test_sentry_records_db_spans_for_every_public_call(backend, db_target, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tests.integrations.sentry_child", db_target, str(tmp_path / "sessions")],
        cwd=TOP,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, f"the calls under Sentry failed:\n{run.stderr}"
    captured = json.loads(run.stdout.splitlines()[-1])
    assert captured["transactions"] == 1
    untraced = [name for name in ALL_CALLS if not captured["calls"].get(name)]
    assert not untraced, f"calls that left no db span: {untraced}"
    for name, spans in captured["calls"].items():
        for span in spans:
            assert span["description"], name  # the statement
            assert span["data"].get("db.system") in DB_SYSTEMS[backend], (name, span)


# --- A statement-rewriting listener ------------------------------------------------------------

#: What the rewriting listener appends to every statement (sqlcommenter appends its /*key='value'*/ so).
COMMENT = "/* traced */"


def test_a_statement_rewriting_listener_changes_what_the_driver_runs(backend, make_manager):
    originals: list[str] = []  # as SQLAlchemy handed them to the rewriting listener
    executed: list[str] = []  # as handed to cursor.execute: what a listener after the rewriting one sees
    traced_by_sqlite: list[str] = []  # as SQLite itself ran them, with the values in place of the placeholders

    def add_comment(conn, cursor, statement, parameters, context, executemany):
        originals.append(statement)
        return f"{statement} {COMMENT}", parameters

    def after_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        executed.append(statement)

    def on_connect(dbapi_connection, connection_record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(traced_by_sqlite.append)

    # Class-level, as tracing libraries attach them, and before the manager exists.
    listeners: list[tuple[str, Callable[..., Any], dict[str, bool]]] = [
        ("before_cursor_execute", add_comment, {"retval": True}),
        ("after_cursor_execute", after_cursor_execute, {}),
        ("connect", on_connect, {}),
    ]
    for name, listener, options in listeners:
        event.listen(Engine, name, listener, **options)
    rewritten: dict[str, list[str]] = {}

    @contextlib.contextmanager
    def each(name: str) -> Iterator[None]:
        originals.clear()
        executed.clear()
        traced_by_sqlite.clear()
        yield
        assert executed, f"{name} ran no statement through SQLAlchemy's events"
        not_rewritten = [statement for statement in executed if not statement.endswith(COMMENT)]
        assert not not_rewritten, f"{name} ran statements the listener did not rewrite: {not_rewritten}"
        if backend == "sqlite":
            # Each statement, up to its first placeholder, began a statement SQLite ran with the comment
            # (SQLite also traces statements of its own, such as FTS5's, which no listener sees).
            ran = [statement for statement in traced_by_sqlite if statement.endswith(COMMENT)]
            missing = [o for o in originals if not any(s.startswith(o.split("?", 1)[0]) for s in ran)]
            assert not missing, f"{name}: SQLite did not run these rewritten: {missing}"
        rewritten[name] = list(executed)

    try:
        manager = make_manager()
        run_public_calls(manager, each)
        manager.close()
    finally:
        for name, listener, _options in listeners:
            event.remove(Engine, name, listener)
    assert set(rewritten) == set(ALL_CALLS)
    for name, listener, _options in listeners:
        assert not event.contains(Engine, name, listener)
