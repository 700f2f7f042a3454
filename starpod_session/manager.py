"""``SessionManager``: the synchronous facade, one transaction per public call."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import secrets
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from ._clock import utc_now
from ._common.folders import ensure_folder
from ._common.search_query import highlighter, parse_query
from ._common.timestamps import coerce_instant
from ._common.tool_calls import TOOL_RESULT, TOOL_USE, ToolResult, ToolUse, read_tool_result, read_tool_use
from ._common.validation import (
    MAX_CONTENT_BYTES,
    MAX_COUNT,
    check_count,
    check_flag,
    check_limit,
    check_optional_short_text,
    check_session_id,
    check_short_text,
    check_text,
)
from ._driver.runner import Runner, StatementRunner
from .backends.engine import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_POOL_SIZE,
    DEFAULT_SQLITE_CACHE_MIB,
    Database,
    check_pool_size,
    create_storage_engine,
    is_read_only,
    to_database,
)
from .channels import Channel, ChannelRegistry, ChannelResolver, check_gap_minutes
from .config import AgentConfig, load_config
from .errors import ExportError, InvalidInput, SessionNotFound, StarpodSessionError
from .features.titles import shorten_title
from .features.transcripts import (
    message_section,
    remove_transcripts,
    transcript_filename,
    transcript_header,
    write_pieces_if_changed,
)
from .records import (
    Continue,
    CostOverview,
    Erasure,
    New,
    OpenedSession,
    SearchHit,
    SessionDecision,
    SessionMessage,
    SessionMeta,
    UsageRecord,
    UsageSummary,
)
from .retry import RetryPolicy
from .storage.repositories import (
    CompactionRepository,
    MessageRepository,
    SessionRepository,
    ToolCallRepository,
    UsageRepository,
)
from .storage.repositories.lifecycle import LifecycleRepository, Removed, prunable, sessions_of_user
from .storage.repositories.search import SearchFilter, SearchRepository, SearchRow
from .storage.repositories.sessions import SessionFilter
from .storage.schema import ensure_schema
from .storage.transactions import TransactionRunner
from .tracing import instrument

if TYPE_CHECKING:  # the tracing extra; never imported at run time by us
    from opentelemetry.trace import TracerProvider

__all__ = ["AUTO_CLOSE_SUMMARY", "SessionManager"]

#: How many sessions :meth:`SessionManager.prune` deletes per transaction.
PRUNE_BATCH = 500

#: The summary of a session closed because its channel's gap passed.
AUTO_CLOSE_SUMMARY = "Auto-closed: inactivity"

#: Whether a session last active at the given time is stale for this resolution.
StalenessTest = Callable[[datetime], bool]
#: Called with the metadata of each session a call auto-closed, after the commit.
CloseCallback = Callable[[SessionMeta], object]

_log = logging.getLogger("starpod_session")


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
        self._engine: Engine = create_storage_engine(
            database.url,
            sqlite_synchronous=sqlite_synchronous,
            sqlite_cache_mib=sqlite_cache_mib,
            lock_timeout=self._lock_timeout,
            pool_size=pool_size,
        )
        self._transactions = TransactionRunner(
            self._engine,
            database,
            retry=retry or RetryPolicy(),
            lock_timeout=self._lock_timeout,
            fast_path=fast_path,
        )
        try:
            self._transactions.guard(lambda: ensure_schema(self._engine, auto_upgrade=auto_upgrade, target=self.target))
        except BaseException:
            self._engine.dispose()
            raise
        #: SQLite's search index takes messages in batches (``repositories.search.INDEX_BATCH``):
        #: a manager that can write indexes the waiting ones before it searches.
        #: One that cannot searches a copy of them besides (``SearchRepository.search_with_waiting``).
        sqlite = self._engine.dialect.name == "sqlite"
        self._indexes_waiting = sqlite and not is_read_only(self._engine)
        self._searches_waiting = sqlite and not self._indexes_waiting
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
                self._index_waiting_messages()
        self._transactions.close()

    def _index_waiting_messages(self) -> None:
        """SQLite: index the messages waiting for the search index's next batch (a write only if any wait)."""
        if self._transactions.read_prepared(lambda connection: SearchRepository(connection).any_waiting()):
            self._transactions.write_prepared(lambda connection: SearchRepository(connection).index_waiting())

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SessionManager({self.target!r})"

    # -- sessions --------------------------------------------------------

    def resolve_session(
        self,
        channel: Channel | str,
        key: str,
        gap_minutes: int | None = None,
        *,
        user_id: str = "admin",
    ) -> SessionDecision:
        """Decide whether a message on ``(channel, key, user_id)`` continues a session.

        Returns ``Continue(id)`` for the open session, or ``New(closed_session_id)``
        when there is none or it went stale; in the latter case the stale session is
        closed with ``"Auto-closed: inactivity"`` and its id is reported to exactly
        one of any racing callers. ``gap_minutes`` overrides the channel's gap for
        this call (``main`` has none). Prefer :meth:`open_session`, which also
        creates the new session in the same transaction.
        """
        name, key, user_id, is_stale = self._resolution(channel, key, gap_minutes, user_id)

        def work(connection: StatementRunner) -> SessionDecision:
            open_id, closed_id = _close_if_stale(SessionRepository(connection), name, key, user_id, is_stale)
            return New(closed_session_id=closed_id) if open_id is None else Continue(open_id)

        decision = self._transactions.write_prepared(work)
        if isinstance(decision, New):
            self._report_auto_close(decision.closed_session_id)
        return decision

    def open_session(
        self,
        channel: Channel | str,
        key: str,
        gap_minutes: int | None = None,
        *,
        user_id: str = "admin",
        triggered_by: str | None = None,
    ) -> OpenedSession:
        """Resolve ``(channel, key, user_id)`` and create its session if needed, in one transaction.

        The same decision as :meth:`resolve_session` followed by
        :meth:`create_session` on ``New``, but atomic: racing callers all get the
        one open session, and a stale session's id comes back as
        ``closed_session_id`` to exactly one of them.
        """
        name, key, user_id, is_stale = self._resolution(channel, key, gap_minutes, user_id)
        if triggered_by is not None:
            triggered_by = check_short_text("triggered_by", triggered_by)

        def work(connection: StatementRunner) -> OpenedSession:
            sessions = SessionRepository(connection)
            open_id, closed_id = _close_if_stale(sessions, name, key, user_id, is_stale)
            if open_id is not None:
                return OpenedSession(open_id, closed_id, False)  # created: positional, the cheaper call
            session_id, created = sessions.insert_unless_open(
                session_id=str(uuid.uuid4()),  # only when one is needed: most calls continue a session
                channel=name,
                key=key,
                user_id=user_id,
                triggered_by=triggered_by,
                now=utc_now(),
            )
            return OpenedSession(session_id, closed_id, created=created)

        opened = self._transactions.write_prepared(work)
        self._report_auto_close(opened.closed_session_id)
        return opened

    def create_session(
        self,
        channel: Channel | str,
        key: str,
        *,
        user_id: str = "admin",
        triggered_by: str | None = None,
    ) -> str:
        """Create an open, read session for ``(channel, key, user_id)`` and return its id.

        Idempotent while the key has an open session: that session's id is returned
        and nothing is written (so two callers racing after ``New`` share one
        session). ``triggered_by`` names the job or trigger that opened it, if any.
        """
        name = self._channels.channel_name(channel)
        key = check_short_text("key", key)
        user_id = check_short_text("user_id", user_id)
        if triggered_by is not None:
            triggered_by = check_short_text("triggered_by", triggered_by)
        new_id = str(uuid.uuid4())

        def work(connection: StatementRunner) -> str:
            session_id, _created = SessionRepository(connection).insert_unless_open(
                session_id=new_id,
                channel=name,
                key=key,
                user_id=user_id,
                triggered_by=triggered_by,
                now=utc_now(),
            )
            return session_id

        return self._transactions.write_prepared(work)

    def touch_session(self, session_id: str) -> None:
        """Mark activity now: ``last_message_at = now`` and ``message_count += 1``."""
        session_id = check_session_id(session_id)
        self._update_session(session_id, lambda sessions: sessions.touch(session_id, utc_now()))

    def set_title_if_empty(self, session_id: str, title: str) -> None:
        """Store ``title`` if the session has none (cut to 100 UTF-8 bytes plus ``"..."``)."""
        session_id = check_session_id(session_id)
        title = shorten_title(check_text("title", title, allow_empty=False))

        self._update_session(
            session_id,
            # No row updated is fine when the session already has a title.
            lambda sessions: sessions.set_title_if_null(session_id, title) or sessions.exists(session_id),
        )

    def close_session(self, session_id: str, summary: str) -> None:
        """Close the session with ``summary`` (closing a closed session replaces its summary)."""
        session_id = check_session_id(session_id)
        summary = check_text("summary", summary)
        self._update_session(session_id, lambda sessions: sessions.close(session_id, summary))

    def mark_read(self, session_id: str, is_read: bool) -> None:
        """Mark the session read (``True``) or unread (``False``); new sessions are read."""
        session_id = check_session_id(session_id)
        is_read = check_flag("is_read", is_read)
        self._update_session(session_id, lambda sessions: sessions.set_read(session_id, is_read))

    def archive_session(self, session_id: str, archived: bool = True) -> None:
        """Archive the session (``archived=False`` restores it): hidden from :meth:`list_sessions`
        by default, still returned by :meth:`get_session`; open or closed alike."""
        session_id = check_session_id(session_id)
        archived = check_flag("archived", archived)
        self._update_session(session_id, lambda sessions: sessions.set_archived(session_id, archived))

    def get_session(self, session_id: str) -> SessionMeta | None:
        """The session's metadata, or ``None`` if there is no such session."""
        session_id = check_session_id(session_id)
        return self._transactions.read_prepared(lambda connection: SessionRepository(connection).get(session_id))

    def find_open_session(self, channel: Channel | str, key: str, *, user_id: str = "admin") -> str | None:
        """The id of the open session of ``(channel, key, user_id)``, or ``None``; a read only.

        Unlike :meth:`resolve_session` it neither closes a stale session nor
        creates one: for a reader that must not write (an adapter's ``get_items``).
        """
        name = self._channels.channel_name(channel)
        key = check_short_text("key", key)
        user_id = check_short_text("user_id", user_id)
        found = self._transactions.read_prepared(
            lambda connection: SessionRepository(connection).find_open_by_key(name, key, user_id)
        )
        return None if found is None else found[0]

    def session_ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` ids of sessions whose id begins with ``prefix``, in id order.

        Lets people type a short id (as ``starpod-session sessions show`` does): one
        result means the prefix is unambiguous.
        """
        prefix = check_text("prefix", prefix, max_chars=255, allow_empty=False)
        limit = check_limit("limit", limit)
        return self._transactions.read(
            lambda connection: SessionRepository(connection).ids_starting_with(prefix, limit)
        )

    def list_sessions(
        self,
        limit: int,
        *,
        user_id: str | None = None,
        channel: Channel | str | None = None,
        is_closed: bool | None = None,
        is_read: bool | None = None,
        archived: bool | None = False,
    ) -> list[SessionMeta]:
        """Up to ``limit`` sessions, most recently active first.

        Without filters: all users, open and closed, archived sessions left out.
        ``user_id`` and ``channel`` keep that user's or channel's sessions,
        ``is_closed`` and ``is_read`` those with that flag; ``None`` does not
        filter. ``archived=True`` lists only archived sessions, ``None`` both.
        Ties on ``last_message_at`` are broken by ``created_at``, then id, both
        descending.
        """
        limit = check_limit("limit", limit)
        filters = SessionFilter(
            user_id=None if user_id is None else check_short_text("user_id", user_id),
            channel=None if channel is None else self._channels.channel_name(channel),
            is_closed=None if is_closed is None else check_flag("is_closed", is_closed),
            is_read=None if is_read is None else check_flag("is_read", is_read),
            is_archived=None if archived is None else check_flag("archived", archived),
        )
        return self._transactions.read_prepared(
            lambda connection: SessionRepository(connection).list_recent(limit, filters)
        )

    # -- messages --------------------------------------------------------

    def save_message(self, session_id: str, role: str, content: str, *, message_key: str | None = None) -> int:
        """Append a message and return its id; a ``user`` message also titles an untitled session.

        Saving a message is activity: ``last_message_at`` becomes now (so a time-gap
        channel does not auto-close a live conversation); ``message_count``, which
        counts :meth:`touch_session` calls, is unchanged.

        ``content`` may hold up to 16 MiB of UTF-8 (``InvalidInput`` above that).
        ``message_key`` (up to 255 characters, unique per session) makes the call
        idempotent: when the session already has a message under that key, its id
        is returned and nothing is written (no message, no title). Without one, the
        call stores a key of its own, so the library's retries never double it.
        A ``tool_use`` or ``tool_result`` message (a JSON object, as the Rust crate
        writes them) also feeds :attr:`CostOverview.by_tool`; content that is not
        such an object is stored all the same.
        """
        session_id = check_session_id(session_id)
        message = _checked_message(role, content, message_key)
        return self._transactions.write_prepared(lambda connection: _store_message(connection, session_id, message))

    def save_messages(self, session_id: str, messages: Iterable[tuple[str, str]]) -> list[int]:
        """Append several ``(role, content)`` messages in one transaction; returns their ids, in order.

        Each is stored as :meth:`save_message` stores it (with a key of its own);
        all or none are stored, their ids ascend in the order given, and no other
        writer's message comes between them. ``[]`` stores nothing (and does not
        check the session).
        """
        session_id = check_session_id(session_id)
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
            raise InvalidInput("messages", f"expected an iterable of (role, content), got {type(messages).__name__}")
        checked = []
        for message in messages:
            if not isinstance(message, tuple) or len(message) != 2:
                raise InvalidInput("messages", f"expected (role, content) tuples, got {type(message).__name__}")
            checked.append(_checked_message(message[0], message[1], None))
        if not checked:
            return []
        return self._transactions.write_prepared(
            lambda connection: [_store_message(connection, session_id, one) for one in checked]
        )

    def pop_message(self, session_id: str) -> SessionMessage | None:
        """Delete the session's newest message and return it; ``None`` when it has none (or no such session).

        One transaction: of racing callers each gets a different message. The
        message's search entries and tool-statistics row go with it; the session's
        ``last_message_at`` and title stay.
        """
        session_id = check_session_id(session_id)
        return self._transactions.write_prepared(
            lambda connection: MessageRepository(connection).delete_newest(session_id)
        )

    def clear_messages(self, session_id: str) -> int:
        """Delete every message of the session (the session, its usage and compactions stay); returns how many.

        ``0`` for a session without messages or an unknown id.
        """
        session_id = check_session_id(session_id)
        return self._transactions.write_prepared(
            lambda connection: MessageRepository(connection).delete_for_session(session_id)
        )

    def get_messages(
        self, session_id: str, limit: int | None = None, before_id: int | None = None
    ) -> list[SessionMessage]:
        """The session's messages in insertion (id) order (``[]`` for an unknown id).

        Keyset paging for long sessions: ``before_id`` keeps messages with a smaller
        id, ``limit`` the newest ``limit`` of those; the page still comes back in
        ascending id order. Pass the first message's id of a page as ``before_id``
        to get the page before it.
        """
        session_id = check_session_id(session_id)
        if limit is not None:
            limit = check_limit("limit", limit)
        if before_id is not None:
            before_id = check_count("before_id", before_id)
        return self._transactions.read_prepared(
            lambda connection: MessageRepository(connection).list_for_session(session_id, limit, before_id)
        )

    def get_message_contents(self, session_id: str, limit: int | None = None) -> list[tuple[str, str]]:
        """The ``(role, content)`` of the session's messages, oldest first (``[]`` for an unknown id).

        What :meth:`get_messages` returns without ids and timestamps, for readers
        that need the text only (an adapter rebuilding a framework's history):
        about twice as fast on a long transcript. ``limit`` keeps the newest
        ``limit``, still oldest first.
        """
        session_id = check_session_id(session_id)
        if limit is not None:
            limit = check_limit("limit", limit)
        return self._transactions.read_prepared(
            lambda connection: MessageRepository(connection).contents_for_session(session_id, limit)
        )

    def export_transcript(self, session_id: str) -> Path:
        """Write the closed session's Markdown transcript to ``sessions_dir``; returns its path.

        The file is ``<title slug>-<id prefix>.md``: a header (title, id, dates,
        channel, user, message count, summary), then every message. Exporting
        again rewrites nothing when the content is unchanged, and replaces the
        file atomically when it changed (e.g. a new summary). The messages are
        read in pages of 1,000 within one read snapshot and written as they come,
        so memory does not grow with the transcript. ``ExportError`` for an open
        session, a manager without ``sessions_dir`` or a file that cannot be
        written; ``SessionNotFound`` for an unknown id.
        """
        session_id = check_session_id(session_id)
        if self.sessions_dir is None:
            raise ExportError("no sessions_dir: pass SessionManager(db, sessions_dir) to export transcripts")
        sessions_dir = self.sessions_dir

        def work(connection: StatementRunner) -> Path:
            # One snapshot: the header's count and the pages agree. The file is written
            # as the pages come (memory holds one page), inside the read transaction.
            meta = SessionRepository(connection).get(session_id)
            if meta is None:
                raise SessionNotFound(session_id)
            if not meta.is_closed:
                raise ExportError(f"session {session_id!r} is still open: close it before exporting its transcript")
            messages = MessageRepository(connection)
            path = sessions_dir / transcript_filename(meta)
            pieces = chain(
                [transcript_header(meta, messages.count_for_session(session_id))],
                ("".join(map(message_section, page)) for page in messages.pages(session_id)),
                ["\n"],
            )
            try:
                write_pieces_if_changed(path, pieces)
            except OSError as error:
                raise ExportError(f"cannot write {path}: {error.strerror or error}") from error
            return path

        return self._transactions.read_prepared(work, snapshot=True)

    # -- usage and compactions ---------------------------------------------

    def record_usage(
        self, session_id: str, usage_record: UsageRecord, turn: int, *, usage_key: str | None = None
    ) -> None:
        """Store the token usage and cost of one turn of the session.

        A record without ``user_id`` is attributed to the session's user.

        ``usage_key`` (up to 255 characters, unique per session) makes the call
        idempotent: when the session already has a row under that key, nothing is
        written. Without one, the call stores a key of its own, so the library's
        retries never double the row.
        """
        session_id = check_session_id(session_id)
        if not isinstance(usage_record, UsageRecord):
            raise InvalidInput("usage_record", f"expected a UsageRecord, got {type(usage_record).__name__}")
        turn = check_count("turn", turn)
        key = check_optional_short_text("usage_key", usage_key)
        if key is None:
            key = _generated_key()  # one for every attempt of this call

        def work(connection: StatementRunner) -> None:
            owner = SessionRepository(connection).owner(session_id)
            if owner is None:
                raise SessionNotFound(session_id)
            record = usage_record if usage_record.user_id is not None else attrs.evolve(usage_record, user_id=owner)
            UsageRepository(connection).append(session_id, turn, record, utc_now(), key)

        self._transactions.write_prepared(work)

    def session_usage(self, session_id: str) -> UsageSummary:
        """Totals over the session's usage rows (zeros for none or an unknown id)."""
        session_id = check_session_id(session_id)
        return self._transactions.read(lambda connection: UsageRepository(connection).session_summary(session_id))

    def cost_overview(self, since: str | datetime | None = None, until: str | datetime | None = None) -> CostOverview:
        """Totals over every usage row with ``since <= timestamp < until`` (a ``None`` bound is open).

        ``since`` and ``until`` are aware datetimes or RFC 3339 strings (``Z`` or
        any offset); ``until`` must not be before ``since``. ``by_user`` and
        ``by_model`` are ordered by cost descending, then name; rows without a
        model count as ``"unknown"``. ``by_day`` has one entry per UTC day and
        model, ordered by day, then cost descending, then model. ``by_tool`` counts the
        ``tool_use`` messages saved in the period per tool, with those whose
        ``tool_result`` reported an error, most called first, then by name.
        """
        start = None if since is None else coerce_instant(since, "since")
        end = None if until is None else coerce_instant(until, "until")
        if start is not None and end is not None and end < start:
            raise InvalidInput("until", f"{end.isoformat()} is before since ({start.isoformat()})")

        def work(connection: StatementRunner) -> CostOverview:
            overview = UsageRepository(connection).overview(start, end)
            return attrs.evolve(overview, by_tool=ToolCallRepository(connection).usage(start, end))

        return self._transactions.read_prepared(work, snapshot=True)

    def record_compaction(
        self,
        session_id: str,
        trigger: str,
        pre_tokens: int,
        summary: str,
        messages_compacted: int,
    ) -> None:
        """Log one context compaction of the session."""
        session_id = check_session_id(session_id)
        trigger = check_short_text("trigger", trigger)
        pre_tokens = check_count("pre_tokens", pre_tokens)
        summary = check_text("summary", summary)
        messages_compacted = check_count("messages_compacted", messages_compacted)

        def work(connection: StatementRunner) -> None:
            _require_session(SessionRepository(connection), session_id)
            CompactionRepository(connection).append(
                session_id,
                trigger=trigger,
                pre_tokens=pre_tokens,
                summary=summary,
                messages_compacted=messages_compacted,
                now=utc_now(),
            )

        self._transactions.write_prepared(work)

    # -- search and data lifecycle --------------------------------------------

    def search_messages(
        self,
        query: str,
        *,
        limit: int = 20,
        user_id: str | None = None,
        channel: Channel | str | None = None,
        session_id: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        roles: Iterable[str] | None = None,
        cursor: str | None = None,
    ) -> list[SearchHit]:
        """Messages matching ``query``, most relevant first (ties: newest first), at most ``limit``.

        ``query`` holds words (all must occur, case-insensitive), prefixes
        (``deploy*``) and quoted phrases (``"roll back"``); anything else is a
        separator, so a query of operators or punctuation only is ``InvalidInput``.
        The filters keep one user's, channel's or session's messages, messages with
        ``since <= timestamp < until``, or of the given roles. For the next page,
        pass the last hit's ``cursor``. See the search guide (docs/guides/search.md) for what each backend's index
        does with accents, short words and scripts written without spaces.
        """
        parsed = parse_query(query)
        limit = check_limit("limit", limit)
        filters = SearchFilter(
            user_id=None if user_id is None else check_short_text("user_id", user_id),
            channel=None if channel is None else self._channels.channel_name(channel),
            session_id=None if session_id is None else check_session_id(session_id),
            since=None if since is None else coerce_instant(since, "since"),
            until=None if until is None else coerce_instant(until, "until"),
            roles=None if roles is None else _check_roles(roles),
        )
        after = None if cursor is None else decode_cursor(cursor)
        waiting = self._indexes_waiting
        search = SearchRepository.search_with_waiting if self._searches_waiting else SearchRepository.search

        def work(connection: StatementRunner) -> list[SearchRow] | None:
            repository = SearchRepository(connection)
            if waiting and repository.any_waiting():
                return None  # messages saved before this call must be found: index them first
            return search(repository, parsed, filters, limit, after)

        # One statement (and on SQLite one look-up before it): prepared work, without a
        # snapshot's extra round trip on servers.
        rows = self._transactions.read_prepared(work)
        if rows is None:
            self._transactions.write_prepared(lambda connection: SearchRepository(connection).index_waiting())
            waiting = False  # messages saved since this call began may wait: they need not be found
            rows = self._transactions.read_prepared(work)
        assert rows is not None
        snippet = highlighter(parsed)
        return [
            SearchHit(
                message_id,
                session,
                role,
                timestamp,
                title,
                channel_name,
                user,
                snippet(content),
                float(score),
                encode_cursor(float(score), message_id),
            )
            for message_id, session, role, timestamp, title, channel_name, user, content, score in rows
        ]

    def delete_session(self, session_id: str, *, keep_usage: bool = True, dry_run: bool = False) -> Erasure:
        """Delete the session with its messages, compactions, search entries and exported transcript.

        Its usage rows stay for accounting, still naming the session id (they hold
        no content), unless ``keep_usage=False`` deletes them too.
        ``SessionNotFound`` for an unknown id. ``dry_run=True`` only counts what would go.
        """
        session_id = check_session_id(session_id)
        keep_usage = check_flag("keep_usage", keep_usage)
        if check_flag("dry_run", dry_run):

            def count(connection: Connection) -> Removed:
                _require_session(SessionRepository(connection), session_id)
                return LifecycleRepository(connection).count_sessions([session_id], keep_usage=keep_usage)

            return _erasure(self._transactions.read(count), 0)

        def work(connection: Connection) -> Removed:
            _require_session(SessionRepository(connection), session_id)
            return LifecycleRepository(connection).delete_sessions([session_id], keep_usage=keep_usage)

        removed = self._transactions.write(work)
        return _erasure(removed, self._remove_transcripts([session_id]))

    def forget_user(self, user_id: str, *, dry_run: bool = False) -> Erasure:
        """Erase everything of ``user_id``, in one transaction: sessions, messages, compactions, search entries.

        The user's usage rows stay so that totals still add up, but their
        ``user_id`` becomes a pseudonym (``forgotten-`` and 32 random hex digits,
        returned in the result): random, so it cannot be traced back to the user
        id by trying candidate ids. Exported transcripts of the sessions are
        deleted after the commit. A user with no data gives all-zero counts.
        ``dry_run=True`` only counts what would go (and the usage rows that would
        take the pseudonym).
        """
        user_id = check_short_text("user_id", user_id)
        if check_flag("dry_run", dry_run):

            def count(connection: Connection) -> Erasure:
                lifecycle = LifecycleRepository(connection)
                removed = lifecycle.count_sessions(sessions_of_user(user_id), keep_usage=True)
                return attrs.evolve(_erasure(removed, 0), usage_rows=lifecycle.count_usage_of_user(user_id))

            return self._transactions.read(count)
        pseudonym = f"forgotten-{uuid.uuid4().hex}"

        def work(connection: Connection) -> tuple[list[str], Removed, int]:
            lifecycle = LifecycleRepository(connection)
            session_ids = lifecycle.session_ids_of_user(user_id)
            removed = lifecycle.delete_sessions(session_ids, keep_usage=True)
            usage_rows = lifecycle.pseudonymise_usage(user_id, pseudonym)
            if removed.messages:
                SearchRepository(connection).purge_deleted_entries()
            return session_ids, removed, usage_rows

        session_ids, removed, usage_rows = self._transactions.write(work)
        erasure = _erasure(removed, self._remove_transcripts(session_ids))
        return attrs.evolve(erasure, usage_rows=usage_rows, pseudonym=pseudonym if usage_rows else None)

    def prune(
        self,
        older_than: timedelta | datetime,
        *,
        dry_run: bool = False,
        keep_usage: bool = True,
        batch_size: int = PRUNE_BATCH,
    ) -> Erasure:
        """Delete closed sessions last active before the cut-off, as :meth:`delete_session` does.

        ``older_than`` is an age (``timedelta``, counted back from now) or an aware
        datetime. The sessions go ``batch_size`` per transaction, so pruning
        millions never holds a long lock; an interruption leaves whole sessions
        deleted or kept. ``dry_run=True`` only counts what would go.
        """
        cutoff = _cutoff(older_than)
        dry_run = check_flag("dry_run", dry_run)
        keep_usage = check_flag("keep_usage", keep_usage)
        if check_limit("batch_size", batch_size) < 1:
            raise InvalidInput("batch_size", f"expected a positive int, got {batch_size!r}")
        if dry_run:
            counted = self._transactions.read(
                lambda connection: LifecycleRepository(connection).count_sessions(
                    prunable(cutoff), keep_usage=keep_usage
                )
            )
            return _erasure(counted, 0)
        total, transcripts = Removed(), 0

        def batch(connection: Connection) -> tuple[list[str], Removed]:
            lifecycle = LifecycleRepository(connection)
            session_ids = lifecycle.prunable_session_ids(cutoff, batch_size)
            return session_ids, lifecycle.delete_sessions(session_ids, keep_usage=keep_usage)

        while True:
            session_ids, removed = self._transactions.write(batch)
            total += removed
            transcripts += self._remove_transcripts(session_ids)
            if len(session_ids) < batch_size:
                return _erasure(total, transcripts)

    def _remove_transcripts(self, session_ids: list[str]) -> int:
        """Delete the sessions' exported transcripts (after the commit that deleted the sessions)."""
        if self.sessions_dir is None:
            return 0
        try:
            return sum(remove_transcripts(self.sessions_dir, session_id) for session_id in session_ids)
        except OSError as error:
            raise ExportError(
                f"the sessions were deleted but a transcript in {self.sessions_dir} could not be: "
                f"{error.strerror or error}"
            ) from error

    # -- transactions ----------------------------------------------------

    def _resolution(
        self, channel: Channel | str, key: str, gap_minutes: int | None, user_id: str
    ) -> tuple[str, str, str, StalenessTest]:
        """Validate the arguments of a resolution; returns (channel name, key, user_id, staleness test)."""
        name = self._channels.channel_name(channel)
        key = check_short_text("key", key)
        user_id = check_short_text("user_id", user_id)
        if gap_minutes is not None:
            gap_minutes = check_gap_minutes(gap_minutes)
        resolver = self._channels.resolver(name)
        return name, key, user_id, lambda last: resolver.is_stale(last, utc_now(), gap_minutes)

    def _report_auto_close(self, closed_session_id: str | None) -> None:
        """Hand a session this call auto-closed (and committed) to ``on_close``; never raises."""
        if closed_session_id is None or self._on_close is None:
            return
        try:
            meta = self.get_session(closed_session_id)
            if meta is not None:
                self._on_close(meta)
        except Exception:
            _log.exception("on_close failed for auto-closed session %s (it stays closed)", closed_session_id)

    def _update_session(self, session_id: str, change: Callable[[SessionRepository[StatementRunner]], bool]) -> None:
        """Apply ``change`` in a write transaction; it returns False when the id is unknown."""

        def work(connection: StatementRunner) -> None:
            if not change(SessionRepository(connection)):
                raise SessionNotFound(session_id)

        self._transactions.write_prepared(work)


#: A message checked by :func:`_checked_message`: role, content, the caller's key, the key stored,
#: the title it gives, and what a tool_use / tool_result message says.
_CheckedMessage = tuple[str, str, "str | None", str, "str | None", "ToolUse | None", "ToolResult | None"]


def _checked_message(role: object, content: object, message_key: object) -> _CheckedMessage:
    """Validate one message of :meth:`SessionManager.save_message` (``InvalidInput``) and work out what it stores."""
    role = check_short_text("role", role)
    content = check_text("content", content, max_bytes=MAX_CONTENT_BYTES)
    given_key = check_optional_short_text("message_key", message_key)
    # One key for every attempt of this call: a retry after a commit the
    # caller never heard of finds the first attempt's row.
    key = _generated_key() if given_key is None else given_key
    title = shorten_title(content) if role == "user" and content.strip() else None
    use = read_tool_use(content) if role == TOOL_USE else None
    result = read_tool_result(content) if role == TOOL_RESULT else None
    return role, content, given_key, key, title, use, result


def _store_message(connection: StatementRunner, session_id: str, message: _CheckedMessage) -> int:
    """Store a checked message in the caller's transaction; returns its id."""
    role, content, given_key, key, title, use, result = message
    sessions, messages = SessionRepository(connection), MessageRepository(connection)
    if given_key is not None or use is not None or result is not None:
        # A repeat is answered before anything is written (the title and the
        # tool statistics too). A generated key is new, except on a retry after
        # a commit the caller never heard of: then the message and its tool row
        # are already stored.
        found = messages.find_by_key(session_id, key)
        if found is not None:
            return found
    now = utc_now()
    # Before the insert: on MariaDB the insert's foreign-key check share-locks
    # the session row, and racing writers that then upgrade it to update it
    # deadlock each other.
    if not sessions.record_message_activity(session_id, now, title):
        raise SessionNotFound(session_id)
    message_id = messages.append(session_id, role, content, now, key)
    if use is not None:
        ToolCallRepository(connection).record_use(message_id, session_id, use, now)
    elif result is not None:
        ToolCallRepository(connection).record_result(message_id, session_id, result, now)
    return message_id


def _close_if_stale(
    sessions: SessionRepository[Runner], channel: str, key: str, user_id: str, is_stale: StalenessTest
) -> tuple[str | None, str | None]:
    """Find the key's open session and auto-close it if stale.

    Returns ``(open id, None)`` when the session continues, else ``(None, closed id)``
    where the closed id is set only for the one caller whose update closed it.
    """
    found = sessions.find_open_by_key(channel, key, user_id)
    if found is None:
        return None, None
    session_id, last_message_at = found
    if not is_stale(last_message_at):
        return session_id, None
    closed_here = sessions.close_if_open(session_id, AUTO_CLOSE_SUMMARY)
    return None, session_id if closed_here else None


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


def _require_session(sessions: SessionRepository[Runner], session_id: str) -> None:
    if not sessions.exists(session_id):
        raise SessionNotFound(session_id)


def _generated_key() -> str:
    """An idempotency key for a write whose caller gave none: 128 random bits in 22 characters."""
    return secrets.token_urlsafe(16)


def _check_roles(roles: object) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise InvalidInput("roles", f"expected an iterable of role names, got {type(roles).__name__}")
    checked = tuple(check_short_text("roles", role) for role in roles)
    if not checked:
        raise InvalidInput("roles", "must name at least one role (None keeps every role)")
    return checked


def _cutoff(older_than: object) -> datetime:
    """The instant before which a session counts as old."""
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidInput("older_than", f"{older_than} is negative")
        return utc_now() - older_than
    if isinstance(older_than, datetime):
        return coerce_instant(older_than, "older_than")
    raise InvalidInput("older_than", f"expected a timedelta or an aware datetime, got {type(older_than).__name__}")


def _erasure(removed: Removed, transcripts: int) -> Erasure:
    return Erasure(removed.sessions, removed.messages, removed.compactions, removed.usage_rows, transcripts)


def encode_cursor(score: float, message_id: int) -> str:
    """The opaque cursor of a search hit: where the next page starts."""
    # What json.dumps([score, message_id]) writes for a finite score, without its overhead.
    text = f"[{score!r}, {message_id}]" if math.isfinite(score) else json.dumps([score, message_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[float, int]:
    """(score, message id) from :func:`encode_cursor`; ``InvalidInput`` for anything else."""
    if not isinstance(cursor, str) or len(cursor) > 200:
        raise InvalidInput("cursor", "not a cursor from search_messages")
    try:
        score, message_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise InvalidInput("cursor", "not a cursor from search_messages") from None
    if type(message_id) is not int or isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InvalidInput("cursor", "not a cursor from search_messages")
    if not math.isfinite(score) or not 0 <= message_id <= MAX_COUNT:
        raise InvalidInput("cursor", "not a cursor from search_messages")
    return float(score), message_id
