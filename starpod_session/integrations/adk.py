"""Google ADK on starpod_session: ``StarpodSessionService``, an ADK ``BaseSessionService`` (the ``adk`` extra).

``runner = Runner(agent=agent, app_name="app", session_service=StarpodSessionService(SessionManager("agent.db")))``

ADK's sessions, events and scoped state live in the ADK tables of the
manager's database (``starpod_session.adk_store``), and every stored event's
content is also a message of a starpod session and its token usage a usage
row, so ``search_messages``, ``export_transcript``, the tool statistics,
``cost_overview`` and the ``starpod-session`` command see ADK agents. It behaves
as ADK's own SQL stores do (ADK's session contract tests run against it: see
docs/guides/adk.md). Importing :mod:`starpod_session` never imports ADK; this
module needs ``pip install 'starpod-session[adk]'``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
    from google.adk.sessions.session import Session
    from google.genai import types
    from pydantic_core import to_jsonable_python
except ImportError as error:  # pragma: no cover - exercised in a process without the extra
    raise ImportError(
        f"starpod_session.integrations.adk needs Google's Agent Development Kit ({error.name or error}): "
        "pip install 'starpod-session[adk]'"
    ) from error

try:  # ADK 2.x; older releases raise a plain ValueError on a stale session
    from google.adk.errors import StaleSessionError
except ImportError:  # pragma: no cover
    StaleSessionError = ValueError  # type: ignore[misc,assignment]

from ..adk_store import (
    TEMP_PREFIX,
    AdkAppended,
    AdkEvent,
    AdkMessage,
    AdkSession,
    AdkSessionExists,
    AdkStaleSession,
    AdkStore,
)
from ..async_manager import AsyncSessionManager, ThreadsToCompletion
from ..errors import InvalidInput, SessionNotFound, StarpodSessionError
from ..manager import SessionManager
from ..prices import ModelPrice, PriceTable, as_price_table
from ..records import UsageRecord
from ._adk_events import events_from_json

__all__ = ["SessionAlreadyExists", "SessionGone", "StaleSession", "StarpodSessionService"]

T = TypeVar("T")

#: The prefix of the revision marker put on the sessions this service returns.
_MARKER = "starpod:"
#: A session read with at most this many events, of at most this many characters of JSON in all, gets its
#: ``Event`` objects built on the event loop's thread (about 0.7 ms of CPU for 50 events of 550 characters):
#: the worker's call is then shorter, and handing it back to the loop costs about 0.35 ms less for 50
#: events. A longer read gets them built in the worker, where the loop can run other tasks between events.
_EVENTS_BUILT_ON_THE_LOOP = 100
_TEXT_BUILT_ON_THE_LOOP = 64 * 1024


class SessionAlreadyExists(AlreadyExistsError, AdkSessionExists):
    """``create_session`` named an existing (app, user, id): ADK's ``AlreadyExistsError`` and ours."""


class StaleSession(StaleSessionError, AdkStaleSession):
    """``append_event`` got a session object older than what is stored: ADK's ``StaleSessionError`` and ours."""


class SessionGone(SessionNotFoundError, SessionNotFound):
    """``append_event`` named a session that is not (or no longer) stored: ADK's ``SessionNotFoundError`` and ours."""

    def __init__(self, session_id: str) -> None:
        SessionNotFound.__init__(self, session_id)


class StarpodSessionService(BaseSessionService):
    """An ADK session service storing in a starpod_session database (SQLite, PostgreSQL or MariaDB).

    ``manager`` is a :class:`~starpod_session.SessionManager` or an
    :class:`~starpod_session.AsyncSessionManager`; the service does not close it.
    ``prices`` (a :class:`~starpod_session.PriceTable` or a mapping of model
    names to prices) puts a cost on each model event's usage; without it, or for
    a model it does not name, the cost is 0.

    Every call's database work runs off the event loop as one transaction of the
    manager (the ``Event`` objects of a short read are built on the loop's thread:
    ``_built_on_the_loop``). Over an
    ``AsyncSessionManager`` it runs on that manager's own pool of threads
    (:meth:`~starpod_session.AsyncSessionManager.run_to_completion`: once
    submitted, a call runs to its end even if its await is cancelled) and the
    service has no threads of its own. Over a ``SessionManager`` it runs on a
    pool of the service's own of ``max_workers`` threads, by default (and at
    most) as many as the manager's pool holds connections (its ``pool_size``):
    more would only wait for a connection; there too a submitted call runs to its
    end even if its await is cancelled. :meth:`close` waits for the calls
    under way, then refuses new ones. Appends to one session
    through one service in one event loop take turns, so a session object shared
    by concurrent runs (tasks) never goes stale by their own writes. Two session
    objects of one session read separately (two runs that each called
    ``get_session``, in this process or another) are two views: once one has
    appended, appending through the other raises :class:`StaleSession` (ADK's
    ``StaleSessionError``) and stores nothing; get the session again and append
    again. See docs/guides/adk.md.
    """

    def __init__(
        self,
        manager: SessionManager | AsyncSessionManager,
        *,
        prices: PriceTable | Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
        max_workers: int | None = None,
    ) -> None:
        self._threads: ThreadsToCompletion | None = None
        if isinstance(manager, AsyncSessionManager):
            if max_workers is not None:
                raise InvalidInput("max_workers", "calls run on the AsyncSessionManager's own threads: leave it out")
            self._store = AdkStore(manager.sync)
            self._submit: Callable[[Callable[[], Any]], Awaitable[Any]] = _on_async_manager(manager)
        elif isinstance(manager, SessionManager):
            self._store = AdkStore(manager)
            workers = _check_workers(max_workers, self._store.pool_size)
            self._threads = ThreadsToCompletion(workers, "starpod-adk")
            self._submit = self._threads.run
        else:
            raise InvalidInput(
                "manager", f"expected a SessionManager or AsyncSessionManager, got {type(manager).__name__}"
            )
        self._prices = as_price_table(prices)
        self._calls = _CallsUnderWay()
        self._locks: weakref.WeakValueDictionary[tuple[object, str, str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._locks_guard = threading.Lock()

    @property
    def manager(self) -> SessionManager:
        """The manager the service stores through (search, transcripts and cost reports are its calls)."""
        return self._store.manager

    # -- BaseSessionService ----------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session (a uuid4 id unless ``session_id`` is given); ``AlreadyExistsError`` if it exists."""

        def create() -> Session:
            stored = self._store.create_session(app_name, user_id, _json_safe(state or {}), session_id)
            return _session(stored, [])

        return await self._run(create)

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with its merged state and events (in timestamp order, ties by id), or ``None``."""
        recent = None if config is None else config.num_recent_events
        after = None if config is None else config.after_timestamp

        def get() -> Session | AdkSession | None:
            stored = self._store.get_session(
                app_name, user_id, session_id, num_recent_events=recent, after_timestamp=after
            )
            if stored is None or _built_on_the_loop(stored.events):
                return stored
            return _session(stored, events_from_json(stored.events))

        got = await self._run(get)
        if isinstance(got, AdkSession):
            return _session(got, events_from_json(got.events))
        return got

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """The app's sessions (one user's, or every user's), without events, least recently updated first."""

        def listed() -> ListSessionsResponse:
            listing = self._store.list_sessions(app_name, user_id)
            stored = _stored_session_maker()
            app = listing.app_name
            sessions = [stored(adk_id, app, owner, state, at) for adk_id, owner, state, at in listing]
            return ListSessionsResponse.model_construct(sessions=sessions)

        return await self._run(listed)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session, its events and its starpod session's messages (usage rows stay); none is no error."""
        await self._run(lambda: self._store.delete_session(app_name, user_id, session_id))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's ``user:`` state in the app, keys without the prefix."""
        return await self._run(lambda: self._store.get_user_state(app_name, user_id))

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store ``event`` (not a partial one) with its state delta, messages and usage, in one transaction."""
        if event.partial:
            return event
        # ADK's steps, written here (its helpers for them are private and differ between releases):
        # temp: keys reach the caller's session object, never the store.
        delta = event.actions.state_delta if event.actions is not None else None
        if delta:
            session.state.update((key, value) for key, value in delta.items() if key.startswith(TEMP_PREFIX))
            event.actions.state_delta = {key: value for key, value in delta.items() if not key.startswith(TEMP_PREFIX)}
        async with self._lock(session):
            if session.events and session.events[-1] is event:
                # This very object was appended last (one appended earlier the store finds stored already:
                # scanning the whole list here made appending n events cost n squared).
                return event
            marker = session._storage_update_marker
            revision = int(marker[len(_MARKER) :]) if marker and marker.startswith(_MARKER) else None
            last_event_id = session.events[-1].id if session.events else None
            owner = (session.app_name, session.user_id, session.id)

            def append() -> AdkAppended:
                return self._store.append_event(
                    *owner,
                    self._stored_event(event, owner[1]),
                    revision=revision,
                    last_update_time=session.last_update_time,
                    last_event_id=last_event_id,
                )

            appended = await self._run(append)
            session.last_update_time = appended.update_time
            session._storage_update_marker = f"{_MARKER}{appended.revision}"
            if not appended.stored:
                return event  # the session already stores an event with this id
            if event.actions is not None and event.actions.state_delta:
                session.state.update(event.actions.state_delta)
            session.events.append(event)
            return event

    async def close(self) -> None:
        """Refuse new calls, wait for those under way and stop the service's threads, if it has any.

        The manager stays open (close it yourself, after the service). Closing
        again waits as the first close does; a call after the close raises
        :class:`~starpod_session.StarpodSessionError`.
        """
        await asyncio.get_running_loop().run_in_executor(None, self._close_now)

    def _close_now(self) -> None:
        self._calls.close_and_wait()
        if self._threads is not None:
            self._threads.shutdown()

    async def __aenter__(self) -> StarpodSessionService:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- beyond ADK --------------------------------------------------------------------

    async def starpod_session_id(self, *, app_name: str, user_id: str, session_id: str) -> str | None:
        """The id of the starpod session holding the ADK session's messages and usage (for
        ``search_messages(session_id=...)``, ``export_transcript``, ``session_usage``), or ``None``."""
        return await self._run(lambda: self._store.starpod_session_id(app_name, user_id, session_id))

    # -- internals -------------------------------------------------------------------

    async def _run(self, call: Callable[[], T]) -> T:
        """``call`` off the event loop (see the class); the store's errors as ADK's (which are ours too)."""
        self._calls.start()
        try:
            result: T = await self._submit(call)
            return result
        except AdkSessionExists as error:
            raise SessionAlreadyExists(str(error)) from error
        except AdkStaleSession as error:
            raise StaleSession(str(error)) from error
        except SessionNotFound as error:
            raise SessionGone(error.session_id) from error
        finally:
            self._calls.end()

    def _lock(self, session: Session) -> asyncio.Lock:
        """The lock appends to ``session``'s (app, user, id) take turns on in this event loop, while anyone holds it."""
        key = (asyncio.get_running_loop(), session.app_name, session.user_id, session.id)
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = asyncio.Lock()
            return lock

    def _stored_event(self, event: Event, user_id: str) -> AdkEvent:
        """What the store needs of ``event``: ADK's JSON, the state delta, the messages and the usage
        (``user_id``'s, the session's user: the store would otherwise copy the record to name it)."""
        delta = event.actions.state_delta if event.actions is not None else None
        return AdkEvent(
            id=event.id,
            timestamp=event.timestamp,
            data=event.model_dump_json(exclude_none=True),
            state_delta=_json_safe(delta) if delta else {},
            messages=event_messages(event),
            usage=event_usage(event, self._prices, user_id),
        )


class _CallsUnderWay:
    """How many of the service's calls are under way, so that closing waits for them; refuses calls once closed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._closed = False

    def start(self) -> None:
        with self._changed:
            if self._closed:
                raise StarpodSessionError("the session service is closed")
            self._count += 1

    def end(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def close_and_wait(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.wait_for(lambda: self._count == 0)


def _check_workers(max_workers: object, pool_size: int) -> int:
    """``max_workers`` (``None``: the manager's ``pool_size``), from 1 to ``pool_size``."""
    if max_workers is None:
        return pool_size
    if type(max_workers) is not int or not 1 <= max_workers <= pool_size:
        raise InvalidInput(
            "max_workers", f"expected an int from 1 to the manager's pool_size ({pool_size}), got {max_workers!r}"
        )
    return max_workers


def _on_async_manager(manager: AsyncSessionManager) -> Callable[[Callable[[], T]], Awaitable[T]]:
    """Run a call on ``manager``'s threads, to its end even if the await is cancelled."""

    def submit(call: Callable[[], T]) -> Awaitable[T]:
        return manager.run_to_completion(lambda _sync: call())

    return submit


def _built_on_the_loop(events: list[str]) -> bool:
    """Whether the ``Event`` objects of these stored texts are built on the event loop's thread."""
    return len(events) <= _EVENTS_BUILT_ON_THE_LOOP and sum(map(len, events)) <= _TEXT_BUILT_ON_THE_LOOP


def _session(stored: AdkSession, events: list[Event]) -> Session:
    """An ADK ``Session`` of stored data: validated without its events (pydantic's validator is quicker than
    ``model_construct``), which are then set as they are (validated once, from their JSON)."""
    session = Session(
        id=stored.id,
        app_name=stored.app_name,
        user_id=stored.user_id,
        state=stored.state,
        last_update_time=stored.last_update_time,
    )
    if events:
        session.events = events
    if stored.revision >= 0:
        session._storage_update_marker = f"{_MARKER}{stored.revision}"
    return session


@functools.cache
def _stored_session_maker() -> Callable[[str, str, str, dict[str, Any], float], Session]:
    """What makes a listed ``Session`` of stored values without validating them again: the very object
    ``Session(id=..., app_name=..., user_id=..., state=..., last_update_time=...)`` makes (equal, the same
    fields set, its own ``events`` list and private attributes), in half the time.

    Every value was checked on its way in (the keys as text, the state as JSON) and read back as stored;
    pydantic's validator would check each again, for each of thousands of sessions in a listing.
    """
    template = Session(id="", app_name="", user_id="", state={}, last_update_time=0.0)
    fields, fields_set = dict(template.__dict__), frozenset(template.model_fields_set)
    extra, private = template.__pydantic_extra__, template.__pydantic_private__
    new, set_attribute = object.__new__, object.__setattr__

    def make(adk_id: str, app_name: str, user_id: str, state: dict[str, Any], update_time: float) -> Session:
        session = new(Session)
        values = {
            **fields,
            "id": adk_id,
            "app_name": app_name,
            "user_id": user_id,
            "state": state,
            "events": [],
            "last_update_time": update_time,
        }
        set_attribute(session, "__dict__", values)
        set_attribute(session, "__pydantic_fields_set__", set(fields_set))
        set_attribute(session, "__pydantic_extra__", extra)
        set_attribute(session, "__pydantic_private__", None if private is None else dict(private))
        return session

    return make


def _json_safe(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` as JSON holds it; a value JSON cannot hold becomes its string (as ADK's stores do)."""
    safe = to_jsonable_python(dict(state), fallback=str)
    if not isinstance(safe, dict):
        raise InvalidInput("state", f"expected a mapping, got {type(state).__name__}")
    return safe


def event_messages(event: Event) -> list[AdkMessage]:
    """The starpod messages an ADK event stores: what its content says, as the library's roles say it.

    Text parts become one ``user`` message (author ``user``) or ``assistant``
    message (any agent); each function call a ``tool_use`` message and each
    function response a ``tool_result`` message (JSON objects as the Rust crate
    writes them: ``id``/``name``/``input``; ``tool_use_id``/``name``/``content``/``is_error``,
    an error when the response holds an ``error`` key); other parts (inline
    data, code, files) a JSON rendering of them, with inline bytes given by size
    only. Thoughts are left out. An event without content stores no message.
    """
    content = event.content
    if content is None or not content.parts:
        return []
    role = "user" if event.author == "user" else "assistant"
    texts: list[str] = []
    others: list[Any] = []
    tools: list[AdkMessage] = []
    for part in content.parts:
        if part.thought:
            continue
        if part.text is not None:
            texts.append(part.text)
        elif part.function_call is not None:
            call = part.function_call
            tools.append(AdkMessage("tool_use", _json({"id": call.id, "name": call.name, "input": call.args or {}})))
        elif part.function_response is not None:
            response = part.function_response
            answer = response.response or {}
            tools.append(
                AdkMessage(
                    "tool_result",
                    _json(
                        {
                            "tool_use_id": response.id,
                            "name": response.name,
                            "content": answer,
                            "is_error": isinstance(answer, dict) and "error" in answer,
                        }
                    ),
                )
            )
        else:
            others.append(_rendered_part(part))
    messages = []
    if texts:
        messages.append(AdkMessage(role, "".join(texts)))
    if others:
        messages.append(AdkMessage(role, _json(others)))
    return messages + tools


def event_usage(event: Event, prices: PriceTable, user_id: str | None = None) -> UsageRecord | None:
    """The usage row of an event with ``usage_metadata``: the model (``model_version``), candidates as output
    tokens, cached content as ``cache_read``, the rest of the prompt as input tokens, priced from ``prices``;
    ``user_id`` the row's user (``None``: the session's, filled in by the store)."""
    usage = event.usage_metadata
    if usage is None:
        return None
    cached = usage.cached_content_token_count or 0
    prompt = usage.prompt_token_count or 0
    return prices.usage_record(
        event.model_version,
        input_tokens=max(prompt - cached, 0),
        output_tokens=usage.candidates_token_count or 0,
        cache_read=cached,
        user_id=user_id,
    )


def _rendered_part(part: types.Part) -> Any:
    rendered = part.model_dump(mode="json", exclude_none=True)
    inline = rendered.get("inline_data")
    if isinstance(inline, dict) and "data" in inline:
        inline["data"] = f"<{len(part.inline_data.data or b'') if part.inline_data else 0} bytes>"
    return rendered


def _json(value: Any) -> str:
    return json.dumps(to_jsonable_python(value, fallback=str), ensure_ascii=False)
