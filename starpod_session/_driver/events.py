"""Whether an engine's connection events have listeners other than the library's own.

The fast path runs prepared work on a pooled driver connection with no SQLAlchemy
``Connection`` and no execution context around it: a listener there would get
neither (OpenTelemetry's and Sentry's SQLAlchemy integrations store their spans on
the execution context, a statement-rewriting listener expects its statement to
run, ``handle_error`` expects to be called). So the fast path is taken only while
nothing listens; with any listener of a connection event attached (to the engine,
or to ``Engine`` itself, before or after the manager was created) a call runs on
a ``Connection`` and its statements through ``Connection.exec_driver_sql``, where
SQLAlchemy fires every event with what it promises.

A listener attached while a call is running may miss that call's statements.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, event

__all__ = ["WATCHED_EVENTS", "ListenerWatch", "listen_as_own", "listened"]

#: The connection events that would see the fast path's calls (``handle_error`` is the dialect's).
#: Not ``before_execute`` / ``after_execute``: prepared statements run as ``exec_driver_sql``
#: runs a statement, which SQLAlchemy documents fires neither.
WATCHED_EVENTS = (
    "before_cursor_execute",
    "after_cursor_execute",
    "engine_connect",
    "begin",
    "commit",
    "rollback",
)

#: How many listeners the library itself put on each event of an engine.
_OWN: weakref.WeakKeyDictionary[Engine, Counter[str]] = weakref.WeakKeyDictionary()


def listen_as_own(engine: Engine, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``event.listens_for(engine, name)`` for a listener of the library's own (not counted as a listener)."""

    def register(listener: Callable[..., Any]) -> Callable[..., Any]:
        event.listen(engine, name, listener)
        _OWN.setdefault(engine, Counter())[name] += 1
        return listener

    return register


class ListenerWatch:
    """``watch()``: whether anything but the library listens to the engine's connection events now.

    About a microsecond per call: it reads each event's listener collection afresh
    (SQLAlchemy replaces an event's empty collection when its first listener comes).
    """

    __slots__ = ("_dialect_dispatch", "_dispatch", "_own")

    def __init__(self, engine: Engine) -> None:
        self._dispatch = engine.dispatch
        self._dialect_dispatch = engine.dialect.dispatch
        own = _OWN.get(engine, Counter())
        self._own = tuple(own[name] for name in WATCHED_EVENTS)

    def __call__(self) -> bool:
        d = self._dispatch
        own = self._own
        return bool(
            self._dialect_dispatch.handle_error
            or len(d.before_cursor_execute) > own[0]
            or len(d.after_cursor_execute) > own[1]
            or len(d.engine_connect) > own[2]
            or len(d.begin) > own[3]
            or len(d.commit) > own[4]
            or len(d.rollback) > own[5]
        )


def listened(connection: Connection) -> bool:
    """Whether a statement run on ``connection`` has listeners that would see it.

    On a ``Connection`` a prepared statement runs on the driver's cursor unless
    someone listens to statements; then through ``exec_driver_sql``, which fires
    the statement events (the transaction events fire on a ``Connection`` anyway).
    """
    d = connection.dispatch
    return bool(d.before_cursor_execute or d.after_cursor_execute or connection.dialect.dispatch.handle_error)
