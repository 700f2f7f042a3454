"""``AdkStore``: the synchronous facade behind the Google ADK session service, one transaction per call.

Google's Agent Development Kit keeps a conversation as a session keyed by
(app, user, id) holding events and a state with scopes: keys starting with
``app:`` are shared by every session of the app, ``user:`` by the user's
sessions of the app, ``temp:`` are never stored, the others belong to the
session. This facade stores that model in the ADK tables (migration 0012) and
makes each ADK session a starpod session, so the rest of the library sees ADK
agents: each stored event's messages go to ``session_messages`` (searchable,
exported in transcripts, counted by the tool statistics) and its usage to
``usage_stats`` (cost reports), in the transaction that stores the event and
its state delta.

It imports nothing of ADK: events cross it as ADK's JSON and the messages and
usage already worked out (``starpod_session.integrations.adk`` does that, and
the asynchronous ``StarpodSessionService`` there calls only this facade and
:class:`~starpod_session.SessionManager`'s public methods). Results are frozen
records. Each starpod session of an ADK session is on the ``main`` channel
under the key ``adk:<app>:<id>`` (a hash of it when longer than 255
characters), triggered by ``google-adk``; deleting it (``delete_session``,
``forget_user``, ``prune``) deletes the ADK session with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
from sqlalchemy import Connection

from ._clock import utc_now
from ._common.limits import SHORT_TEXT_LENGTH
from ._common.tool_calls import TOOL_RESULT, TOOL_USE, read_tool_result, read_tool_use
from ._common.validation import MAX_CONTENT_BYTES, check_short_text, check_text
from ._driver.runner import StatementRunner
from .errors import InvalidInput, SessionNotFound, StarpodSessionError
from .features.titles import shorten_title
from .manager import SessionManager
from .records import UsageRecord
from .storage.repositories import MessageRepository, SessionRepository, ToolCallRepository, UsageRepository
from .storage.repositories.adk import AdkRepository
from .storage.repositories.lifecycle import LifecycleRepository
from .storage.repositories.usage import usage_columns

__all__ = [
    "ADK_TRIGGER",
    "APP_PREFIX",
    "TEMP_PREFIX",
    "USER_PREFIX",
    "AdkAppended",
    "AdkEvent",
    "AdkListing",
    "AdkMessage",
    "AdkSession",
    "AdkSessionExists",
    "AdkStaleSession",
    "AdkStore",
]

#: ADK's state scopes (``google.adk.sessions.State``'s prefixes).
APP_PREFIX, USER_PREFIX, TEMP_PREFIX = "app:", "user:", "temp:"
#: The ``triggered_by`` of every starpod session an ADK session opens.
ADK_TRIGGER = "google-adk"
#: How many sessions an :class:`AdkStore` remembers the last write of (then it starts afresh).
_REMEMBERED = 4096


class AdkSessionExists(StarpodSessionError):
    """``create_session`` named an (app, user, id) that is already stored."""


class AdkStaleSession(StarpodSessionError):
    """An append named a session whose stored revision moved on since the caller read it."""


@attrs.frozen
class AdkMessage:
    """A message an event adds to its starpod session (``role`` as :meth:`SessionManager.save_message` takes it)."""

    role: str
    content: str


@attrs.frozen
class AdkEvent:
    """One ADK event to store: its id, timestamp (epoch seconds) and ADK's JSON of it, with what it changes.

    ``state_delta`` is the event's delta, keys with their scope prefixes (``temp:``
    keys are left out), values already JSON-serialisable; ``messages`` the
    messages it adds to the starpod session; ``usage`` its token usage, if any.
    """

    id: str
    timestamp: float
    data: str
    state_delta: Mapping[str, Any] = attrs.field(factory=dict)
    messages: Sequence[AdkMessage] = ()
    usage: UsageRecord | None = None


@attrs.frozen
class AdkSession:
    """One ADK session as stored: its keys, merged state (prefixes put back), update time and revision.

    ``events`` holds ADK's JSON of the events read, in (timestamp, id) order
    (empty in listings); ``session_id`` is the starpod session holding its messages.
    """

    app_name: str
    user_id: str
    id: str
    state: dict[str, Any]
    last_update_time: float
    revision: int
    session_id: str
    events: list[str] = attrs.field(factory=list)


@attrs.frozen
class AdkListing:
    """The sessions :meth:`AdkStore.list_sessions` found, in ADK's order, and the states they share.

    Iterating it gives ``(id, user id, merged state, last update time)`` per session,
    each state a new dict (the session's keys, then the app's and the user's with
    their prefixes), made as it is reached: a listing of many sessions holds their
    stored JSON, not a record per session.
    """

    app_name: str
    #: (id, user id, session state, update time) per session, the state as its JSON text or already parsed.
    rows: Sequence[tuple[str, str, str | dict[str, Any], float]]
    app_state: Mapping[str, Any]
    user_states: Mapping[str, Mapping[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[str, str, dict[str, Any], float]]:
        app = {APP_PREFIX + key: value for key, value in self.app_state.items()}
        users = {
            owner: {USER_PREFIX + key: value for key, value in state.items()}
            for owner, state in self.user_states.items()
        }
        decode = _DECODE
        for adk_id, owner, stored, update_time in self.rows:
            # A new dict per session and per iteration, whether parsed here or unpacked from a packed listing.
            if isinstance(stored, dict):
                state: dict[str, Any] = dict(stored)
            else:
                state = {} if stored == "{}" else decode(stored)
            if app:
                state.update(app)
            user = users.get(owner)
            if user:
                state.update(user)
            yield adk_id, owner, state, update_time


@attrs.frozen
class AdkAppended:
    """What :meth:`AdkStore.append_event` did: the session's revision and update time now, and whether it stored."""

    revision: int
    update_time: float
    stored: bool


class AdkStore:
    """The ADK tables over a :class:`SessionManager`: each public call is one of its transactions.

    Thread-safe as the manager is (share one). Raises the library's errors:
    :class:`InvalidInput` for a rejected argument, :class:`AdkSessionExists`,
    :class:`AdkStaleSession`, :class:`SessionNotFound` (an append to a missing
    session), :class:`~starpod_session.StorageError` and its kind.
    """

    def __init__(self, manager: SessionManager) -> None:
        if not isinstance(manager, SessionManager):
            raise InvalidInput("manager", f"expected a SessionManager, got {type(manager).__name__}")
        self.manager = manager
        # The facade's own transaction machinery: one transaction per call, retried as a whole.
        self._transactions = manager._transactions
        # (app, user, id) -> (starpod session id, revision, session state JSON) as this store last wrote or
        # created them: an append at that revision then needs to read neither the row nor its state
        # (``AdkRepository.advance_session`` checks in the same statement that they are still so).
        self._written: dict[tuple[str, str, str], tuple[str, int, str]] = {}

    @property
    def pool_size(self) -> int:
        """How many connections the manager's pool holds: more threads calling this store at once only wait."""
        return self._transactions.pool_size

    # -- sessions ------------------------------------------------------------------

    def create_session(
        self, app_name: str, user_id: str, state: Mapping[str, Any] | None = None, session_id: str | None = None
    ) -> AdkSession:
        """Create the session (a uuid4 id when ``session_id`` is ``None`` or blank) and its starpod session.

        A given id with whitespace around it names a stored session with that
        exact id if there is one, else the stripped id (as ADK's SQLite store
        does). ``state`` is split by scope: ``app:`` and ``user:`` keys update
        those states, ``temp:`` keys are dropped. :class:`AdkSessionExists` if
        (app, user, id) is taken.
        """
        app_name, user_id = _check_owner(app_name, user_id)
        scoped = _scoped(state or {})
        given = None if session_id is None else check_text("session_id", session_id)
        starpod_id = str(uuid.uuid4())

        def work(connection: StatementRunner) -> AdkSession:
            adk = AdkRepository(connection)
            adk_id = "" if given is None else _resolved(adk, app_name, user_id, given)
            adk_id = check_short_text("session_id", adk_id or str(uuid.uuid4()))
            now = utc_now()
            epoch = now.timestamp()
            opened = SessionRepository(connection).insert_open(
                session_id=starpod_id,
                channel="main",
                key=_key("adk:", f"{app_name}:{adk_id}"),
                user_id=user_id,
                triggered_by=ADK_TRIGGER,
                now=now,
            )
            session_state = _dumps(scoped.session)
            if not opened or not adk.insert_session(app_name, user_id, adk_id, starpod_id, session_state, epoch):
                raise AdkSessionExists(f"session {adk_id!r} of user {user_id!r} in app {app_name!r} already exists")
            app_state, user_state = _apply_shared_deltas(adk, app_name, user_id, scoped, epoch)
            return AdkSession(
                app_name,
                user_id,
                adk_id,
                _merged(app_state, user_state, dict(scoped.session)),
                epoch,
                0,
                starpod_id,
            )

        created = self._transactions.write_prepared(work)
        self._remember((app_name, user_id, created.id), starpod_id, 0, _dumps(scoped.session))
        return created

    def get_session(
        self,
        app_name: str,
        user_id: str,
        session_id: str,
        *,
        num_recent_events: int | None = None,
        after_timestamp: float | None = None,
    ) -> AdkSession | None:
        """The session with its merged state and events, or ``None``; one snapshot.

        ``session_id`` with whitespace around it names a session stored under
        that exact id if there is one, else the stripped id (as in
        :meth:`create_session`, :meth:`delete_session` and :meth:`starpod_session_id`).

        ``after_timestamp`` keeps the events with ``timestamp >= after_timestamp``
        (``None`` or 0 keeps all, as in ADK); ``num_recent_events`` the last N of
        those (0: none).
        """
        app_name, user_id = _check_owner(app_name, user_id)
        session_id = check_text("session_id", session_id)
        if num_recent_events is not None and (type(num_recent_events) is not int or num_recent_events < 0):
            raise InvalidInput("num_recent_events", f"expected a non-negative int, got {num_recent_events!r}")
        after = None if not after_timestamp else _check_epoch("after_timestamp", after_timestamp)

        def work(connection: StatementRunner) -> tuple[AdkSession, str] | None:
            adk = AdkRepository(connection)
            adk_id = _resolved(adk, app_name, user_id, session_id)
            found = adk.session_with_states(app_name, user_id, adk_id)
            if found is None:
                return None
            (starpod_id, state, update_time, revision), app_state, user_state = found
            events = [] if num_recent_events == 0 else adk.events(starpod_id, recent=num_recent_events, after=after)
            merged = _merged(_loads(app_state), _loads(user_state), _loads(state))
            return AdkSession(app_name, user_id, adk_id, merged, update_time, revision, starpod_id, events), state

        read = self._transactions.read_prepared(work, snapshot=True)
        if read is None:
            return None
        session, state = read
        # The caller appends to what it read next: the guarded UPDATE then spares that append a locking read.
        self._remember((app_name, user_id, session.id), session.session_id, session.revision, state)
        return session

    def list_sessions(self, app_name: str, user_id: str | None = None) -> AdkListing:
        """The app's sessions (one user's, or all users' for ``None``), without events, in ADK's order:
        least recently updated first, then by user, then by id; one snapshot."""
        app_name = check_short_text("app_name", app_name)
        user = None if user_id is None else check_short_text("user_id", user_id)

        def work(connection: StatementRunner) -> AdkListing:
            adk = AdkRepository(connection)
            rows = _listed(adk, app_name, user)
            app_state = _loads(adk.app_state(app_name))
            if user is None:
                user_states = {owner: _loads(state) for owner, state in adk.user_states(app_name).items()}
            else:
                user_states = {user: _loads(adk.user_state(app_name, user))}
            return AdkListing(app_name, rows, app_state, user_states)

        return self._transactions.read_prepared(work, snapshot=True)

    def delete_session(self, app_name: str, user_id: str, session_id: str) -> bool:
        """Delete the session, its events and its starpod session (messages, search entries; usage rows stay).

        Returns whether there was such a session (a missing one is no error);
        ``session_id`` is resolved as :meth:`get_session` resolves it.
        """
        app_name, user_id = _check_owner(app_name, user_id)
        session_id = check_text("session_id", session_id)

        def work(connection: Connection) -> bool:
            adk = AdkRepository(connection)
            adk_id = _resolved(adk, app_name, user_id, session_id)
            starpod_id = adk.starpod_session_id(app_name, user_id, adk_id)
            if starpod_id is None:
                return False
            adk.delete_session(app_name, user_id, adk_id, starpod_id)
            LifecycleRepository(connection).delete_sessions([starpod_id], keep_usage=True)
            return True

        return self._transactions.write(work)

    def get_user_state(self, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's ``user:`` state in the app, keys without the prefix (``{}`` when none is stored)."""
        app_name, user_id = _check_owner(app_name, user_id)
        return _loads(
            self._transactions.read_prepared(lambda connection: AdkRepository(connection).user_state(app_name, user_id))
        )

    def starpod_session_id(self, app_name: str, user_id: str, session_id: str) -> str | None:
        """The id of the starpod session holding the ADK session's messages and usage, or ``None``
        (``session_id`` resolved as :meth:`get_session` resolves it)."""
        app_name, user_id = _check_owner(app_name, user_id)
        session_id = check_text("session_id", session_id)

        def work(connection: StatementRunner) -> str | None:
            adk = AdkRepository(connection)
            return adk.starpod_session_id(app_name, user_id, _resolved(adk, app_name, user_id, session_id))

        return self._transactions.read_prepared(work)

    # -- events --------------------------------------------------------------------

    def append_event(
        self,
        app_name: str,
        user_id: str,
        session_id: str,
        event: AdkEvent,
        *,
        revision: int | None,
        last_update_time: float,
        last_event_id: str | None,
    ) -> AdkAppended:
        """Store ``event`` with its state delta, messages and usage, in one transaction.

        The caller says which state of the session it has seen: the ``revision``
        it read (or ``None`` if it does not know one: then the session counts as
        stale only if it was updated after ``last_update_time`` and its last
        stored event is not ``last_event_id``). :class:`AdkStaleSession` if the
        stored session moved on, :class:`SessionNotFound` if it is gone. An
        event whose id the session already stores is not stored again (nothing
        is written: ``stored`` is False). The session's update time becomes the
        event's timestamp and its revision goes up by one.
        """
        app_name, user_id = _check_owner(app_name, user_id)
        session_id = check_short_text("session_id", session_id)
        checked = _checked_event(event, user_id)
        event_id, timestamp, _data, scoped, _messages, _usage = checked
        if revision is not None and (type(revision) is not int or revision < 0):
            raise InvalidInput("revision", f"expected a non-negative int or None, got {revision!r}")
        last_update_time = _check_epoch("last_update_time", last_update_time)

        owner = (app_name, user_id, session_id)
        known = self._written.get(owner) if revision is not None else None

        def work(connection: StatementRunner) -> tuple[AdkAppended, str, str]:
            adk = AdkRepository(connection)
            if known is not None and known[1] == revision:
                # The caller read what this store last wrote: one guarded UPDATE instead of a locking read.
                starpod_id, _revision, state = known
                if scoped.session:
                    state = _dumps({**_loads(state), **scoped.session})
                advance: dict[str, Any] = {
                    "app_name": app_name,
                    "user_id": user_id,
                    "adk_id": session_id,
                    "session_id": starpod_id,
                    "read_revision": revision,
                    "event_id": event_id,
                    "state": state,
                    "update_time": timestamp,
                }
                moved = _appended_in_one(adk, advance, revision, checked)
                if moved is None:
                    moved = adk.advance_session(**advance) and _store_event(
                        connection, adk, app_name, user_id, starpod_id, revision, checked
                    )
                if moved:
                    return AdkAppended(revision + 1, timestamp, stored=True), starpod_id, state
                # Not at that revision any more, or gone, or storing the event already: the checked path says which.
            found = adk.lock_for_append(app_name, user_id, session_id, event_id)
            if found is None:
                raise SessionNotFound(session_id)
            (starpod_id, state, update_time, stored_revision), stored_already = found
            if stored_already and revision is not None and stored_revision == revision + 1:
                # The one append since the caller's read stored this very event: a retry of an append whose
                # commit landed but whose answer was lost (a cut connection), not a concurrent writer.
                return AdkAppended(stored_revision, update_time, stored=False), starpod_id, state
            if revision is not None:
                stale = stored_revision != revision
            else:
                stale = update_time > last_update_time and adk.latest_event_id(starpod_id) != last_event_id
            if stale:
                raise AdkStaleSession(
                    f"session {session_id!r} was modified in storage since it was read (revision {stored_revision}, "
                    f"read at {revision}): get it again before appending"
                )
            if stored_already:
                return AdkAppended(stored_revision, update_time, stored=False), starpod_id, state
            if scoped.session:
                state = _dumps({**_loads(state), **scoped.session})
            adk.update_session(app_name, user_id, session_id, state, timestamp)
            _store_event(connection, adk, app_name, user_id, starpod_id, stored_revision, checked)
            return AdkAppended(stored_revision + 1, timestamp, stored=True), starpod_id, state

        appended, starpod_id, state = self._transactions.write_prepared(work)
        self._remember(owner, starpod_id, appended.revision, state)
        return appended

    def _remember(self, owner: tuple[str, str, str], starpod_id: str, revision: int, state: str) -> None:
        """Note what this store just committed of a session (at most :data:`_REMEMBERED` sessions)."""
        written = self._written
        if len(written) >= _REMEMBERED and owner not in written:
            written.clear()
        written[owner] = (starpod_id, revision, state)


# -- helpers --------------------------------------------------------------------------


@attrs.frozen
class _Scoped:
    """A state (or delta) split by scope, prefixes taken off; ``temp:`` keys dropped."""

    app: dict[str, Any]
    user: dict[str, Any]
    session: dict[str, Any]


def _scoped(state: Mapping[str, Any]) -> _Scoped:
    if not isinstance(state, Mapping):
        raise InvalidInput("state", f"expected a mapping, got {type(state).__name__}")
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    session: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise InvalidInput("state", f"keys must be str, got {type(key).__name__}")
        if key.startswith(APP_PREFIX):
            app[key[len(APP_PREFIX) :]] = value
        elif key.startswith(USER_PREFIX):
            user[key[len(USER_PREFIX) :]] = value
        elif not key.startswith(TEMP_PREFIX):
            session[key] = value
    scoped = _Scoped(app, user, session)
    for part in (app, user, session):
        if part:
            _dumps(part)  # refuse a value JSON cannot hold before anything is written
    return scoped


def _apply_shared_deltas(
    adk: AdkRepository[Any], app_name: str, user_id: str, scoped: _Scoped, now: float, *, read_unchanged: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge the ``app:`` and ``user:`` deltas into their stored states (rows locked, in that order); returns
    both states (a state without a delta is read only if ``read_unchanged``, else returned empty)."""
    app_state: dict[str, Any] = {}
    user_state: dict[str, Any] = {}
    if scoped.app:
        app_state = {**_loads(adk.lock_app_state(app_name, now)), **scoped.app}
        adk.set_app_state(app_name, _dumps(app_state), now)
    elif read_unchanged:
        app_state = _loads(adk.app_state(app_name))
    if scoped.user:
        user_state = {**_loads(adk.lock_user_state(app_name, user_id, now)), **scoped.user}
        adk.set_user_state(app_name, user_id, _dumps(user_state), now)
    elif read_unchanged:
        user_state = _loads(adk.user_state(app_name, user_id))
    return app_state, user_state


#: What :func:`_checked_event` makes of an event: id, timestamp, JSON, scoped delta, messages, usage.
_CheckedEvent = tuple[str, float, str, _Scoped, tuple[AdkMessage, ...], UsageRecord | None]


def _store_event(
    connection: StatementRunner,
    adk: AdkRepository[Any],
    app_name: str,
    user_id: str,
    session_id: str,
    revision: int,
    event: _CheckedEvent,
) -> bool:
    """The rows of an event appended to a session at ``revision`` (whose row has moved on already):
    the app's and the user's deltas, the event, its messages and its usage. True."""
    event_id, timestamp, data, scoped, messages, usage = event
    _apply_shared_deltas(adk, app_name, user_id, scoped, timestamp, read_unchanged=False)
    adk.insert_event(session_id, event_id, timestamp, data)
    now = utc_now()
    _store_messages(connection, session_id, event_id, messages, now)
    if usage is not None:
        UsageRepository(connection).append(session_id, revision + 1, usage, now, _key("adk:", event_id))
    return True


def _appended_in_one(
    adk: AdkRepository[Any], advance: dict[str, Any], revision: int, event: _CheckedEvent
) -> bool | None:
    """The append of ``event`` in one statement where the backend can (``AdkRepository.append_in_one``) and
    it needs no more (no app or user delta, no tool call to record): whether it stored; ``None``, having
    written nothing, where it cannot."""
    event_id, _timestamp, data, scoped, messages, usage = event
    if scoped.app or scoped.user or not adk.appends_in_one_statement:
        return None
    if any(message.role in (TOOL_USE, TOOL_RESULT) for message in messages):
        return None
    now = utc_now()
    title, rows = _message_rows(event_id, messages) if messages else (None, [])
    usage_row = None if usage is None else usage_columns(revision + 1, usage, now, _key("adk:", event_id))
    return adk.append_in_one(advance, data, now, title, rows, usage_row)


def _store_messages(
    connection: StatementRunner, session_id: str, event_id: str, messages: Sequence[AdkMessage], now: Any
) -> None:
    """The event's messages in the starpod session (as ``save_message`` stores them), keyed by the event id."""
    if not messages:
        return
    title, rows = _message_rows(event_id, messages)
    SessionRepository(connection).record_message_activity(session_id, now, title)
    store, tools = MessageRepository(connection), ToolCallRepository(connection)
    for role, content, key in rows:
        message_id = store.append(session_id, role, content, now, key)
        if role == TOOL_USE:
            tools.record_use(message_id, session_id, read_tool_use(content), now)
        elif role == TOOL_RESULT:
            tools.record_result(message_id, session_id, read_tool_result(content), now)


def _message_rows(event_id: str, messages: Sequence[AdkMessage]) -> tuple[str | None, list[tuple[str, str, str]]]:
    """The title the event's messages give a session without one, and their ``(role, content, key)``."""
    title = next((shorten_title(m.content) for m in messages if m.role == "user" and m.content.strip()), None)
    keys = [_key("adk:", event_id if index == 0 else f"{event_id}#{index}") for index in range(len(messages))]
    return title, [(message.role, message.content, key) for message, key in zip(messages, keys, strict=True)]


def _checked_event(event: AdkEvent, user_id: str) -> _CheckedEvent:
    if not isinstance(event, AdkEvent):
        raise InvalidInput("event", f"expected an AdkEvent, got {type(event).__name__}")
    event_id = check_short_text("event.id", event.id)
    timestamp = _check_epoch("event.timestamp", event.timestamp)
    data = check_text("event.data", event.data, max_bytes=MAX_CONTENT_BYTES)
    messages = tuple(event.messages)
    for message in messages:
        if not isinstance(message, AdkMessage):
            raise InvalidInput("event.messages", f"expected AdkMessage records, got {type(message).__name__}")
        check_short_text("event.messages.role", message.role)
        check_text("event.messages.content", message.content, max_bytes=MAX_CONTENT_BYTES)
    usage = event.usage
    if usage is not None:
        if not isinstance(usage, UsageRecord):
            raise InvalidInput("event.usage", f"expected a UsageRecord, got {type(usage).__name__}")
        if usage.user_id is None:
            usage = attrs.evolve(usage, user_id=user_id)
    return event_id, timestamp, data, _scoped(event.state_delta), messages, usage


def _listed(adk: AdkRepository[Any], app_name: str, user_id: str | None) -> Sequence[tuple[str, str, Any, float]]:
    """The rows of a listing (``AdkListing.rows``): packed by the server where the backend packs rows (one
    value instead of a row each: MariaDB's driver spends more on a row than parsing it costs), else row by row."""
    if adk.packs_listings:
        count, text = adk.packed_sessions(app_name, user_id)
        if count == 0:
            return []
        unpacked = _unpacked(text, count, user_id)
        if unpacked is not None:
            return unpacked
        # Longer than the server packs (GROUP_CONCAT_MAX_LEN): row by row, in the same snapshot.
    return adk.list_sessions(app_name, user_id)


def _unpacked(text: str | None, count: int, user_id: str | None) -> list[tuple[str, str, Any, float]] | None:
    """The rows of a packed listing (``AdkRepository.packed_sessions``), or ``None`` when the text does not hold
    all ``count`` of them: cut short, it is no JSON, or (cut after a row) it holds fewer."""
    if text is None:
        return None
    try:
        packed = _DECODE(text)
    except ValueError:
        return None
    if len(packed) != count:
        return None
    # float(): the server writes a double with no fraction as an integer.
    if user_id is None:
        rows = [(adk_id, owner, state, float(at)) for adk_id, owner, state, at in packed]
    else:
        rows = [(adk_id, user_id, state, float(at)) for adk_id, state, at in packed]
    # A state stored by another writer that is not a JSON object (or not JSON, run into its neighbours):
    # row by row, where it is read exactly as get_session reads it.
    if not all(type(state) is dict for _id, _owner, state, _at in rows):
        return None
    return rows


def _check_owner(app_name: object, user_id: object) -> tuple[str, str]:
    return check_short_text("app_name", app_name), check_short_text("user_id", user_id)


def _check_epoch(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(field, f"expected seconds since the epoch as a finite number, got {value!r}")
    return float(value)


def _resolved(adk: AdkRepository[Any], app_name: str, user_id: str, session_id: str) -> str:
    """``session_id`` if a session is stored under it, else its stripped form (ADK's SQLite store's rule)."""
    if not session_id or session_id == session_id.strip() or adk.exists(app_name, user_id, session_id):
        return session_id
    return session_id.strip()


def _key(prefix: str, text: str) -> str:
    """``prefix + text``, or ``prefix`` and a SHA-256 of ``text`` when that is longer than a key column holds."""
    key = prefix + text
    if len(key) <= SHORT_TEXT_LENGTH:
        return key
    return prefix + "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _dumps(value: Mapping[str, Any]) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput("state", f"not storable as JSON: {error}") from None


#: The JSON decoder ``json.loads`` calls, without its per-call argument checks (a listing decodes a state per session).
_DECODE = json.JSONDecoder().decode


def _loads(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StarpodSessionError(f"a stored ADK state is not a JSON object: {text[:80]!r}")
    return value


def _merged(
    app_state: Mapping[str, Any], user_state: Mapping[str, Any], session_state: dict[str, Any]
) -> dict[str, Any]:
    """The session's state as ADK shows it: the session's keys, then the app's and the user's with their prefixes."""
    for key, value in app_state.items():
        session_state[APP_PREFIX + key] = value
    for key, value in user_state.items():
        session_state[USER_PREFIX + key] = value
    return session_state
