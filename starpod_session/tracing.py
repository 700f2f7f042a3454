"""OpenTelemetry spans of our own: one span per public call of a ``SessionManager``, or nothing at all.

The choice is made once, when a manager is created (:func:`instrument`, the last
step of ``SessionManager.__init__``):

- no tracer provider given and none configured by the application (``opentelemetry.trace``
  not imported, or its global provider still the API's default proxy): nothing is
  bound, the class's plain methods run, and a call costs exactly what it costs
  without this module. ``opentelemetry`` is never imported by us: an application
  that configured a provider has imported ``opentelemetry.trace`` already.
- otherwise every method of :data:`TRACED_CALLS` is shadowed on the instance by a
  wrapper that runs the plain method inside a span named ``starpod_session.<method>``,
  current while the call runs (so the SQL spans of an instrumented engine are its
  children).

A provider configured after the manager was created is not picked up: configure
OpenTelemetry first (as for other instrumentations), or pass ``tracer_provider=``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._common.limits import SHORT_TEXT_LENGTH
from ._version import __version__
from .backends import backend_of

if TYPE_CHECKING:  # opentelemetry-api is optional: only its types are needed here
    from opentelemetry.trace import SpanKind, Tracer, TracerProvider
    from sqlalchemy.engine import Dialect

__all__ = ["DB_SYSTEM_NAME", "ERROR_TYPE", "RESULT", "SESSION_ID", "TRACED_CALLS", "db_system_name", "instrument"]

#: The instrumentation scope of our tracer.
SCOPE: Final = "starpod_session"
#: OpenTelemetry's attribute for the database product (semantic conventions 1.26+; ``db.system`` before).
DB_SYSTEM_NAME: Final = "db.system.name"
#: OpenTelemetry's attribute for the class of the exception a failed call raised.
ERROR_TYPE: Final = "error.type"
#: Our attribute for the session a call concerns.
SESSION_ID: Final = "starpod_session.session_id"
#: In :data:`TRACED_CALLS`: the session id is the call's result (a ``str``, or a record's ``session_id``).
RESULT: Final = "<result>"

#: Each public call of ``SessionManager`` that gets a span → where the span's session id
#: comes from: the name of the call's parameter, :data:`RESULT`, or ``None`` (no session).
#: ``close``, the ``target`` property and the context-manager methods get none: they are
#: the manager's lifecycle, not calls on the database (and Python looks dunder methods up
#: on the class, so an instance attribute could not shadow ``__enter__``/``__exit__`` anyway).
TRACED_CALLS: Final[dict[str, str | None]] = {
    # sessions
    "resolve_session": RESULT,  # a Continue's session id; New has none
    "open_session": RESULT,
    "create_session": RESULT,
    "touch_session": "session_id",
    "set_title_if_empty": "session_id",
    "close_session": "session_id",
    "mark_read": "session_id",
    "archive_session": "session_id",
    "get_session": "session_id",
    "find_open_session": RESULT,
    "session_ids_starting_with": None,
    "list_sessions": None,
    # messages
    "save_message": "session_id",
    "save_messages": "session_id",
    "pop_message": "session_id",
    "clear_messages": "session_id",
    "get_messages": "session_id",
    "get_message_contents": "session_id",
    "export_transcript": "session_id",
    # usage and compactions
    "record_usage": "session_id",
    "session_usage": "session_id",
    "cost_overview": None,
    "record_compaction": "session_id",
    # search and data lifecycle
    "search_messages": "session_id",  # keyword-only filter, often absent
    "delete_session": "session_id",
    "forget_user": None,
    "prune": None,
}


def db_system_name(dialect: Dialect) -> str:
    """The semantic conventions' ``db.system.name`` of a connected engine's dialect.

    ``sqlite``, ``postgresql``, ``mariadb``; ``mysql`` for a MySQL server behind a
    ``mysql+pymysql://`` URL (SQLAlchemy tells them apart once connected).
    """
    return backend_of(dialect).system_name(dialect)


def instrument(manager: object, tracer_provider: TracerProvider | None, dialect: Dialect) -> None:
    """Bind traced wrappers of :data:`TRACED_CALLS` on ``manager``, or do nothing (see the module).

    ``tracer_provider`` is the one the manager was given (``None``: the global one, if
    the application configured one). An explicit ``NoOpTracerProvider`` binds nothing.
    """
    if tracer_provider is None and "opentelemetry.trace" not in sys.modules:
        return  # nobody imported it, so nobody configured a provider: the plain methods run
    from opentelemetry import trace  # imported already, or installed (an explicit provider)

    if tracer_provider is None:
        tracer_provider = trace.get_tracer_provider()
        if isinstance(tracer_provider, trace.ProxyTracerProvider):  # the API's default: nothing configured
            return
    if isinstance(tracer_provider, trace.NoOpTracerProvider):
        return
    tracer = tracer_provider.get_tracer(SCOPE, __version__)
    attributes = {DB_SYSTEM_NAME: db_system_name(dialect)}
    for name, session_source in TRACED_CALLS.items():
        method = getattr(manager, name)
        wrapper = _traced(method, tracer, trace.SpanKind.INTERNAL, f"{SCOPE}.{name}", attributes, session_source)
        setattr(manager, name, wrapper)


def _traced(
    method: Callable[..., Any],
    tracer: Tracer,
    kind: SpanKind,
    span_name: str,
    attributes: dict[str, str],
    session_source: str | None,
) -> Callable[..., Any]:
    """``method`` (bound) run inside a span current for the call; its session id and failure recorded."""
    parameter = None if session_source == RESULT else session_source  # the session id's parameter, if any
    from_result = session_source == RESULT
    position = _position(method, parameter)

    @functools.wraps(method)
    def traced(*args: Any, **kwargs: Any) -> Any:
        span_attributes = attributes
        if parameter is not None:
            session_id = args[position] if position is not None and position < len(args) else kwargs.get(parameter)
            if isinstance(session_id, str) and len(session_id) <= SHORT_TEXT_LENGTH:  # not one it rejects
                span_attributes = {**attributes, SESSION_ID: session_id}
        # start_as_current_span records an Exception and sets the status to ERROR itself.
        with tracer.start_as_current_span(span_name, kind=kind, attributes=span_attributes) as span:
            try:
                result = method(*args, **kwargs)
            except Exception as error:
                span.set_attribute(ERROR_TYPE, _qualified_name(type(error)))
                raise
            if from_result:
                session_id = result if isinstance(result, str) else getattr(result, "session_id", None)
                if isinstance(session_id, str):
                    span.set_attribute(SESSION_ID, session_id)
            return result

    return traced


def _position(method: Callable[..., Any], parameter: str | None) -> int | None:
    """Where ``parameter`` comes among the bound method's positional arguments (``None``: keyword-only)."""
    if parameter is None:
        return None
    for index, (name, signature) in enumerate(inspect.signature(method).parameters.items()):
        if name == parameter:
            return index if signature.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else None
    raise ValueError(f"{method.__qualname__} has no parameter {parameter!r}")


def _qualified_name(error_type: type[BaseException]) -> str:
    """An exception class as the semantic conventions' ``error.type`` wants it: module and name."""
    module = error_type.__module__
    return error_type.__qualname__ if module == "builtins" else f"{module}.{error_type.__qualname__}"
