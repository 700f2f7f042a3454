"""Sessions and their resolution: which session a message on a channel belongs to, the staleness policy,
and the calls that read and change one session."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from .._clock import utc_now
from .._common.validation import check_flag, check_limit, check_session_id, check_short_text, check_text
from .._driver.runner import Runner, StatementRunner
from ..channels import Channel, check_gap_minutes
from ..errors import SessionNotFound
from ..records import Continue, New, OpenedSession, SessionDecision, SessionMeta
from ..storage.repositories import SessionRepository
from ..storage.repositories.sessions import SessionFilter
from .base import ManagerState
from .titles import shorten_title

_log = logging.getLogger("starpod_session")

#: The summary of a session closed because its channel's gap passed.
AUTO_CLOSE_SUMMARY = "Auto-closed: inactivity"


#: Whether a session last active at the given time is stale for this resolution.
StalenessTest = Callable[[datetime], bool]


def resolve_session(
    self: ManagerState,
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
    name, key, user_id, is_stale = _resolution(self, channel, key, gap_minutes, user_id)

    def work(connection: StatementRunner) -> SessionDecision:
        open_id, closed_id = _close_if_stale(SessionRepository(connection), name, key, user_id, is_stale)
        return New(closed_session_id=closed_id) if open_id is None else Continue(open_id)

    decision = self._transactions.write_prepared(work)
    if isinstance(decision, New):
        _report_auto_close(self, decision.closed_session_id)
    return decision


def open_session(
    self: ManagerState,
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
    name, key, user_id, is_stale = _resolution(self, channel, key, gap_minutes, user_id)
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
    _report_auto_close(self, opened.closed_session_id)
    return opened


def create_session(
    self: ManagerState,
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


def touch_session(self: ManagerState, session_id: str) -> None:
    """Mark activity now: ``last_message_at = now`` and ``message_count += 1``."""
    session_id = check_session_id(session_id)
    _update_session(self, session_id, lambda sessions: sessions.touch(session_id, utc_now()))


def set_title_if_empty(self: ManagerState, session_id: str, title: str) -> None:
    """Store ``title`` if the session has none (cut to 100 UTF-8 bytes plus ``"..."``)."""
    session_id = check_session_id(session_id)
    title = shorten_title(check_text("title", title, allow_empty=False))

    _update_session(
        self,
        session_id,
        # No row updated is fine when the session already has a title.
        lambda sessions: sessions.set_title_if_null(session_id, title) or sessions.exists(session_id),
    )


def close_session(self: ManagerState, session_id: str, summary: str) -> None:
    """Close the session with ``summary`` (closing a closed session replaces its summary)."""
    session_id = check_session_id(session_id)
    summary = check_text("summary", summary)
    _update_session(self, session_id, lambda sessions: sessions.close(session_id, summary))


def mark_read(self: ManagerState, session_id: str, is_read: bool) -> None:
    """Mark the session read (``True``) or unread (``False``); new sessions are read."""
    session_id = check_session_id(session_id)
    is_read = check_flag("is_read", is_read)
    _update_session(self, session_id, lambda sessions: sessions.set_read(session_id, is_read))


def archive_session(self: ManagerState, session_id: str, archived: bool = True) -> None:
    """Archive the session (``archived=False`` restores it): hidden from :meth:`list_sessions`
    by default, still returned by :meth:`get_session`; open or closed alike."""
    session_id = check_session_id(session_id)
    archived = check_flag("archived", archived)
    _update_session(self, session_id, lambda sessions: sessions.set_archived(session_id, archived))


def get_session(self: ManagerState, session_id: str) -> SessionMeta | None:
    """The session's metadata, or ``None`` if there is no such session."""
    session_id = check_session_id(session_id)
    return self._transactions.read_prepared(lambda connection: SessionRepository(connection).get(session_id))


def find_open_session(self: ManagerState, channel: Channel | str, key: str, *, user_id: str = "admin") -> str | None:
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


def session_ids_starting_with(self: ManagerState, prefix: str, limit: int = 2) -> list[str]:
    """Up to ``limit`` ids of sessions whose id begins with ``prefix``, in id order.

    Lets people type a short id (as ``starpod-session sessions show`` does): one
    result means the prefix is unambiguous.
    """
    prefix = check_text("prefix", prefix, max_chars=255, allow_empty=False)
    limit = check_limit("limit", limit)
    return self._transactions.read(lambda connection: SessionRepository(connection).ids_starting_with(prefix, limit))


def list_sessions(
    self: ManagerState,
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
    return self._lagging_reads.read_prepared(  # may lag: on a read replica when there is one
        lambda connection: SessionRepository(connection).list_recent(limit, filters)
    )


def _resolution(
    self: ManagerState, channel: Channel | str, key: str, gap_minutes: int | None, user_id: str
) -> tuple[str, str, str, StalenessTest]:
    """Validate the arguments of a resolution; returns (channel name, key, user_id, staleness test)."""
    name = self._channels.channel_name(channel)
    key = check_short_text("key", key)
    user_id = check_short_text("user_id", user_id)
    if gap_minutes is not None:
        gap_minutes = check_gap_minutes(gap_minutes)
    resolver = self._channels.resolver(name)
    return name, key, user_id, lambda last: resolver.is_stale(last, utc_now(), gap_minutes)


def _report_auto_close(self: ManagerState, closed_session_id: str | None) -> None:
    """Hand a session this call auto-closed (and committed) to ``on_close``; never raises."""
    if closed_session_id is None or self._on_close is None:
        return
    try:
        meta = self.get_session(closed_session_id)
        if meta is not None:
            self._on_close(meta)
    except Exception:
        _log.exception("on_close failed for auto-closed session %s (it stays closed)", closed_session_id)


def _update_session(
    self: ManagerState, session_id: str, change: Callable[[SessionRepository[StatementRunner]], bool]
) -> None:
    """Apply ``change`` in a write transaction; it returns False when the id is unknown."""

    def work(connection: StatementRunner) -> None:
        if not change(SessionRepository(connection)):
            raise SessionNotFound(session_id)

    self._transactions.write_prepared(work)


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


def require_session(sessions: SessionRepository[Runner], session_id: str) -> None:
    if not sessions.exists(session_id):
        raise SessionNotFound(session_id)
