"""Bounded waits on a server: a connect timeout, and a deadline on every connection a call holds.

A server that crashed refuses connections and drops the open ones: the driver
notices at once. A server that *hangs* (stopped, swapping, a network path that
black-holes packets) does neither: the kernel still accepts the connection and
acknowledges every byte, so neither TCP keepalives nor a server-side
``statement_timeout`` ever fire, and a call would wait for ever. Two bounds:

- **connect timeout**: the driver's own (libpq ``connect_timeout``, applied to
  each host of a multi-host URL in turn; PyMySQL ``connect_timeout``);
- **statement timeout**: a :class:`Watchdog` per engine notes when each
  connection is handed out of the pool and, when one is still out
  ``statement_timeout`` seconds later, shuts its socket down. The driver then
  raises at once ("server closed the connection"), the connection is discarded,
  and the call ends with our :class:`~starpod_session.errors.StorageError`. A
  call's attempt never holds a connection that long on a server that answers:
  each statement's lock waits are bounded by ``lock_timeout``, which the
  deadline is never shorter than.

Work that may rightly take longer runs inside :func:`exempt`: migrations with no
deadline (and ``starpod-session db upgrade`` on an engine made with
``statement_timeout=None``), bulk work such as a transcript export with
:data:`BULK_TIMEOUT`. (Pruning deletes in batches, each a call of its own.)
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, event

from ..errors import InvalidInput

__all__ = [
    "BULK_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "MAX_TIMEOUT",
    "Watchdog",
    "check_optional_seconds",
    "check_seconds",
    "connect_arguments",
    "exempt",
    "stop_watching",
    "watch",
]

#: Seconds a connection attempt may take (per host of a multi-host URL) before the driver gives up.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Seconds one attempt of a call may hold a server connection (never less than ``lock_timeout``).
DEFAULT_STATEMENT_TIMEOUT = 60.0

_local = threading.local()

#: The watchdog of each engine :func:`watch` was given.
_WATCHDOGS: weakref.WeakKeyDictionary[Engine, Watchdog] = weakref.WeakKeyDictionary()


#: Seconds bulk work (a transcript export read in one snapshot) may hold a connection.
BULK_TIMEOUT = 3600.0

#: What ``_local.limit`` holds when the thread uses the watchdog's own limit.
_OWN_LIMIT = -1.0


@contextlib.contextmanager
def exempt(limit: float | None = None) -> Iterator[None]:
    """Connections this thread takes out of a pool inside the block have no deadline, or ``limit`` seconds.

    ``exempt()`` for migrations; ``exempt(BULK_TIMEOUT)`` for bulk work that may
    rightly take longer than a call but must still end on a hung server.
    """
    before = getattr(_local, "limit", _OWN_LIMIT)
    _local.limit = limit
    try:
        yield
    finally:
        _local.limit = before


def connect_arguments(backend: str, connect_timeout: float) -> dict[str, Any]:
    """The driver's connect arguments bounding a connection attempt to ``connect_timeout`` seconds."""
    if backend == "postgresql":
        # libpq takes whole seconds and treats anything below 2 as 2.
        return {"connect_timeout": max(2, math.ceil(connect_timeout))}
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": connect_timeout}
    return {}


def watch(engine: Engine, limit: float) -> Watchdog:
    """Give ``engine`` a :class:`Watchdog` cutting connections held over ``limit`` seconds.

    Its ``checkout`` listener goes in front of the others (``insert=True``), so that
    the pool's idle ping to a hung server is bounded too.
    """
    watchdog = Watchdog(limit)
    _WATCHDOGS[engine] = watchdog

    @event.listens_for(engine, "checkout", insert=True)
    def note_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        limit = getattr(_local, "limit", _OWN_LIMIT)
        if limit is not None:
            watchdog.start(record, dbapi_connection, None if limit == _OWN_LIMIT else limit)

    @event.listens_for(engine, "checkin")
    def note_checkin(_dbapi_connection: Any, record: Any) -> None:
        watchdog.end(record)

    return watchdog


def stop_watching(engine: Engine) -> None:
    """End the watchdog thread of ``engine``, if it has one (the engine is being closed)."""
    watchdog = _WATCHDOGS.pop(engine, None)
    if watchdog is not None:
        watchdog.stop()


class Watchdog:
    """Shuts down the socket of any connection held longer than ``limit`` seconds; one thread, started lazily."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._out: dict[int, tuple[float, Any]] = {}  # id(pool record) -> (deadline, driver connection)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        #: How many connections it has cut (for tests and logs).
        self.cut = 0

    def start(self, record: Any, dbapi_connection: Any, limit: float | None = None) -> None:
        """A connection was handed out: its deadline (``limit`` seconds, the watchdog's own by default) starts now."""
        with self._lock:
            self._out[id(record)] = (time.monotonic() + (self.limit if limit is None else limit), dbapi_connection)
            if self._thread is None:
                # The thread holds the watchdog weakly: a manager dropped without close() ends it too.
                self._thread = threading.Thread(
                    target=_patrol,
                    args=(weakref.ref(self), self._stopped, min(1.0, self.limit / 10)),
                    name="starpod-session-watchdog",
                    daemon=True,
                )
                self._thread.start()

    def end(self, record: Any) -> None:
        """A connection came back: no deadline any more."""
        with self._lock:
            self._out.pop(id(record), None)

    def stop(self) -> None:
        self._stopped.set()

    def cut_late(self) -> None:
        """Shut down every connection held past its deadline."""
        now = time.monotonic()
        with self._lock:  # held while cutting: a connection handed back meanwhile is never cut
            late = [key for key, (deadline, _) in self._out.items() if deadline <= now]
            for key in late:
                if _shut_down(self._out.pop(key)[1]):
                    self.cut += 1


def _patrol(watchdog: weakref.ref[Watchdog], stopped: threading.Event, interval: float) -> None:
    """The watchdog's thread: every ``interval`` seconds, cut late connections; end once stopped or collected."""
    while not stopped.wait(interval):
        alive = watchdog()
        if alive is None:
            return
        alive.cut_late()
        del alive


def _shut_down(dbapi_connection: Any) -> bool:
    """Shut the connection's socket down (both ways), so a read blocked on it returns; whether it had one."""
    fd: int | None = None
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg
    if pgconn is not None:
        with contextlib.suppress(Exception):
            fd = int(pgconn.socket)
    sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
    if fd is None and sock is not None:
        with contextlib.suppress(OSError, ValueError):
            fd = sock.fileno()
    if fd is None or fd < 0:
        return False
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    with duplicate:
        try:
            duplicate.shutdown(socket.SHUT_RDWR)  # acts on the socket itself, not only this descriptor
        except OSError:
            return False
    return True


#: The longest timeout taken: a day (beyond it a wait is no longer a bound).
MAX_TIMEOUT = 86_400


def check_optional_seconds(field: str, value: object) -> float | None:
    """``None``, or ``value`` checked by :func:`check_seconds`."""
    return None if value is None else check_seconds(field, value)


def check_seconds(field: str, value: object) -> float:
    """``value`` as positive finite seconds, else :class:`InvalidInput`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(field, f"expected seconds as a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT:
        raise InvalidInput(field, f"expected seconds above 0 and at most {MAX_TIMEOUT}, got {value}")
    return float(value)
