"""``SessionManager``: the synchronous facade, one transaction per public call.

The class holds the manager's state and lifecycle (opening the database, ``close``);
its public calls are the functions of the feature modules in ``features/``, bound
here as methods.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from ._common.folders import ensure_folder
from ._common.validation import check_flag
from .backends import backend_of
from .backends.deadlines import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    check_optional_seconds,
    check_seconds,
    exempt,
)
from .backends.engine import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_POOL_SIZE,
    DEFAULT_SQLITE_CACHE_MIB,
    Database,
    check_pool_size,
    create_storage_engine,
    to_database,
)
from .channels import ChannelRegistry, ChannelResolver
from .config import AgentConfig, load_config
from .errors import InvalidInput, StarpodSessionError
from .features import lifecycle, messages, search, sessions, usage
from .features.base import CloseCallback
from .features.sessions import AUTO_CLOSE_SUMMARY
from .retry import RetryPolicy
from .storage.replicas import ReadUrl, ReplicaReads, replica_databases
from .storage.schema import ensure_schema
from .storage.transactions import TransactionRunner
from .tracing import instrument

if TYPE_CHECKING:  # the tracing extra; never imported at run time by us
    from opentelemetry.trace import TracerProvider

__all__ = ["AUTO_CLOSE_SUMMARY", "SessionManager"]


class SessionManager:
    """Keeps an agent's sessions, messages, usage and compactions in one database.

    ``db_path`` is a file path (SQLite, created with its folders if missing) or a
    SQLAlchemy URL (``postgresql+psycopg://...``, ``mysql+pymysql://...``), or a
    ``starpod_session.backends.engine.Database`` that ``engine.to_database`` made of either
    (taken as it is: the command line names its database once). On open
    the schema is brought to this release's head unless ``auto_upgrade=False``.

    ``config`` is an :class:`AgentConfig` or the path of an ``agent.toml`` whose
    ``[channels.NAME]`` sections set gaps, add time-gap channels and daily resets
    (:class:`ConfigError` if it is wrong); ``channels`` maps further names to
    resolvers of your own and wins over the configuration.

    ``sessions_dir`` is where :meth:`export_transcript` writes Markdown
    transcripts. ``on_close`` is called with the :class:`SessionMeta` of every
    session auto-closed by :meth:`resolve_session` or :meth:`open_session`: once
    per session (by the one call whose transaction closed it), after that
    transaction commits. An exception from it is logged on the
    ``starpod_session`` logger and swallowed: the session stays closed and the
    call returns its result as usual.

    One manager is meant to be shared by every thread of a process; each public
    call is one transaction, retried on transient lock errors, and returns frozen
    records. ``lock_timeout`` (seconds, default 30) bounds how long a call waits
    for locks other connections hold: each statement waits at most that long, and
    no retry starts once that long has passed since the call began; then the call
    raises :class:`StorageBusy`.

    ``pool_size`` (default 32, as many threads as Python's default thread pool
    runs) is the most connections the manager opens: each is opened when a
    thread needs one and none is free, then kept for the next call, so N threads
    use N connections and none waits while one is free. A call that finds all
    ``pool_size`` in use waits for one; past ``lock_timeout`` it raises
    :class:`StorageBusy`. On SQLite too (readers of a WAL file run in parallel,
    writers still take turns on the file's lock). Use it as a context manager or
    call :meth:`close`.

    SQLite only: ``sqlite_synchronous`` is the ``synchronous`` level (``NORMAL``,
    or ``FULL`` to make every commit durable against power loss), and
    ``sqlite_cache_mib`` how many MiB of the file's pages each connection keeps in
    memory (default 8; SQLite's own is 2): at most ``pool_size`` times that in all.

    Servers: ``connect_timeout`` (seconds, default 10) bounds each connection
    attempt (per host of a multi-host URL), and ``statement_timeout`` (seconds,
    default 60, never less than ``lock_timeout`` plus one; ``None`` for none)
    how long one attempt of a call may wait on the server: a server that hangs
    costs that long, then :class:`StorageError`. The migration on open is exempt;
    :meth:`export_transcript` gets an hour (``backends.deadlines.BULK_TIMEOUT``).
    PostgreSQL failover: give every host in one URL with
    ``target_session_attrs=read-write`` (docs/guides/past-one-server.md).

    ``read_url`` (a URL, or a list of them) names read replicas of the database:
    ``list_sessions``, ``search_messages`` and ``cost_overview`` read from them in
    turn and may be as stale as the replica's lag; every other call stays on the
    primary. A replica that fails is left out for a few seconds and the call runs on
    the primary instead (``storage/replicas.py``).

    ``fast_path`` (default ``True``): the hot calls run their statements straight
    on the driver's connection, skipping SQLAlchemy's per-statement work, while
    nothing listens to the engine's connection events. Whenever a listener is
    attached (OpenTelemetry's or Sentry's SQLAlchemy integration, a
    statement-rewriting listener, ``event.listen(Engine, ...)`` of your own) every
    call takes SQLAlchemy's Core path, where listeners get the ``Connection``, the
    execution context and the events SQLAlchemy promises. ``fast_path=False``
    always takes the Core path.

    Tracing (the ``tracing`` extra, OpenTelemetry): when the application has
    configured a tracer provider before creating the manager, or passes one as
    ``tracer_provider``, each public call is one span ``starpod_session.<method>``
    (the SQL spans of an instrumented engine are its children); otherwise the
    manager binds nothing and a call costs what it costs without OpenTelemetry.
    See the tracing guide (docs/guides/tracing.md).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | URL | Database,
        sessions_dir: str | os.PathLike[str] | None = None,
        *,
        auto_upgrade: bool = True,
        sqlite_synchronous: str = "NORMAL",
        sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
        config: AgentConfig | str | os.PathLike[str] | None = None,
        channels: dict[str, ChannelResolver] | None = None,
        retry: RetryPolicy | None = None,
        on_close: CloseCallback | None = None,
        tracer_provider: TracerProvider | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        fast_path: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
        read_url: ReadUrl | Sequence[ReadUrl] | None = None,
    ) -> None:
        database = to_database(db_path)  # a Database (the command line's) as it is: parsed once
        fast_path = check_flag("fast_path", fast_path)
        self._lock_timeout = _check_lock_timeout(lock_timeout)
        pool_size = check_pool_size(pool_size)
        if on_close is not None and not callable(on_close):
            raise InvalidInput("on_close", f"expected a callable, got {type(on_close).__name__}")
        self._on_close = on_close
        #: The agent configuration in force (channels from ``agent.toml``).
        self.config = load_config(config)
        self._channels = ChannelRegistry({**self.config.resolvers(), **(channels or {})})
        self.sessions_dir = None if sessions_dir is None else ensure_folder(Path(sessions_dir), "sessions_dir")
        replicas = replica_databases(read_url, database)
        engine_for = functools.partial(
            create_storage_engine,
            lock_timeout=self._lock_timeout,
            pool_size=pool_size,
            connect_timeout=check_seconds("connect_timeout", connect_timeout),
            statement_timeout=check_optional_seconds("statement_timeout", statement_timeout),
        )
        self._engine: Engine = engine_for(
            database.url, sqlite_synchronous=sqlite_synchronous, sqlite_cache_mib=sqlite_cache_mib
        )
        runner_for = functools.partial(
            TransactionRunner, retry=retry or RetryPolicy(), lock_timeout=self._lock_timeout, fast_path=fast_path
        )
        self._transactions = runner_for(self._engine, database)
        #: The reads that may lag (``storage.replicas.REPLICA_CALLS``): on a replica when ``read_url`` names one.
        self._lagging_reads = ReplicaReads(
            self._transactions, [runner_for(engine_for(replica.url), replica) for replica in replicas]
        )
        try:
            with exempt():  # a migration may rightly take longer than statement_timeout
                self._transactions.guard(
                    lambda: ensure_schema(self._engine, auto_upgrade=auto_upgrade, target=self.target)
                )
        except BaseException:
            self._lagging_reads.close()
            self._transactions.close()
            raise
        #: SQLite's search index takes messages in batches (``repositories.search.INDEX_BATCH``):
        #: a manager that can write indexes the waiting ones before it searches.
        #: One that cannot searches a copy of them besides (``SearchRepository.search_with_waiting``).
        backend = backend_of(self._engine.dialect)
        self._indexes_waiting = backend.indexes_in_batches and not backend.is_read_only(self._engine)
        self._searches_waiting = backend.indexes_in_batches and not self._indexes_waiting
        instrument(self, tracer_provider, self._engine.dialect)  # spans, or nothing at all (tracing.py)

    # -- lifecycle -------------------------------------------------------

    @property
    def target(self) -> str:
        """The database, as a path for SQLite or a URL with the password hidden."""
        return self._transactions.target

    def close(self) -> None:
        """Release every pooled connection. Every later call raises :class:`StarpodSessionError`.

        Closing again does nothing. On SQLite the messages still waiting for the
        search index's next batch are indexed first (so that a reader that cannot
        write finds them too), unless the database refuses the write (it is
        locked beyond ``lock_timeout``, say): then the next search of a manager
        that can write indexes them.
        """
        if self._indexes_waiting:
            # Closed already, or the write refused: nothing is lost, the messages still wait.
            with contextlib.suppress(StarpodSessionError):
                search.index_waiting_messages(self)
        self._lagging_reads.close()
        self._transactions.close()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SessionManager({self.target!r})"

    # The public calls: each a function of its feature module, bound here as a method
    # (its argument checks, its work in the database, its errors live there).

    # sessions and their resolution (features/sessions.py)
    resolve_session = sessions.resolve_session
    open_session = sessions.open_session
    create_session = sessions.create_session
    touch_session = sessions.touch_session
    set_title_if_empty = sessions.set_title_if_empty
    close_session = sessions.close_session
    mark_read = sessions.mark_read
    archive_session = sessions.archive_session
    get_session = sessions.get_session
    find_open_session = sessions.find_open_session
    session_ids_starting_with = sessions.session_ids_starting_with
    list_sessions = sessions.list_sessions

    # messages (features/messages.py)
    save_message = messages.save_message
    save_messages = messages.save_messages
    pop_message = messages.pop_message
    clear_messages = messages.clear_messages
    get_messages = messages.get_messages
    get_message_contents = messages.get_message_contents
    export_transcript = messages.export_transcript

    # usage, compactions and reports (features/usage.py)
    record_usage = usage.record_usage
    session_usage = usage.session_usage
    cost_overview = usage.cost_overview
    record_compaction = usage.record_compaction

    # search (features/search.py)
    search_messages = search.search_messages

    # data lifecycle (features/lifecycle.py)
    delete_session = lifecycle.delete_session
    forget_user = lifecycle.forget_user
    prune = lifecycle.prune


def _check_lock_timeout(lock_timeout: object) -> float:
    """``lock_timeout`` as positive finite seconds, else :class:`InvalidInput`."""
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)):
        raise InvalidInput("lock_timeout", f"expected seconds as a number, got {type(lock_timeout).__name__}")
    if not math.isfinite(lock_timeout) or lock_timeout <= 0 or lock_timeout > _MAX_LOCK_TIMEOUT:
        raise InvalidInput(
            "lock_timeout", f"expected seconds above 0 and at most {_MAX_LOCK_TIMEOUT}, got {lock_timeout}"
        )
    return float(lock_timeout)


#: A day: beyond it a wait is no longer a bound (and MariaDB's own limit is about a year).
_MAX_LOCK_TIMEOUT = 86_400
