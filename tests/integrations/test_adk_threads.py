"""``StarpodSessionService``'s threads: over an ``AsyncSessionManager`` its calls run on that manager's
own pool; over a ``SessionManager`` on a pool of the service's own, bounded by the manager's pool; and
what ``close()`` does. On every backend; skipped, naming the extra, where ADK is not installed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from starpod_session import InvalidInput, SessionManager, StarpodSessionError
from starpod_session.adk_store import AdkStore

from ..backends import needs_packages

try:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    from starpod_session.integrations.adk import StarpodSessionService
except ImportError:  # the module is skipped (pytestmark)
    pass

pytestmark = needs_packages("adk", "google.adk")

APP, USER = "weather", "ada"


def text_event(author: str, text: str, **fields: Any) -> Event:
    role = "user" if author == "user" else "model"
    return Event(
        author=author, invocation_id="inv", content=types.Content(role=role, parts=[types.Part(text=text)]), **fields
    )


def service_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("starpod-adk")}


def test_over_an_async_manager_every_call_runs_through_its_pool_and_the_service_has_no_threads(make_async, backend):
    manager = make_async()
    submitted: list[object] = []
    run_to_completion = manager.run_to_completion

    async def spy(call: Callable[[SessionManager], Any]) -> Any:
        submitted.append(call)
        return await run_to_completion(call)

    manager.run_to_completion = spy  # type: ignore[method-assign]
    before = service_threads()

    async def scenario() -> tuple[Any, ...]:
        service = StarpodSessionService(manager)
        session = await service.create_session(app_name=APP, user_id=USER, state={"user:tz": "UTC"})
        await service.append_event(session, text_event("user", "hi", actions=EventActions(state_delta={"n": 1})))
        await service.append_event(session, text_event("agent", "hello"))
        got = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
        listed = await service.list_sessions(app_name=APP, user_id=USER)
        user_state = await service.get_user_state(app_name=APP, user_id=USER)
        await service.delete_session(app_name=APP, user_id=USER, session_id=session.id)
        gone = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
        await service.close()
        return session, got, listed, user_state, gone

    session, got, listed, user_state, gone = asyncio.run(scenario())
    assert len(submitted) == 8  # every call of the service, none on threads of its own
    assert service_threads() == before
    assert got is not None and [e.content.parts[0].text for e in got.events] == ["hi", "hello"]
    assert got.state == {"n": 1, "user:tz": "UTC"} and got.events == session.events
    assert [s.id for s in listed.sessions] == [session.id]
    assert user_state == {"tz": "UTC"} and gone is None


def test_over_a_sync_manager_at_most_its_pool_size_calls_run_at_once(make_manager, monkeypatch):
    service = StarpodSessionService(make_manager(pool_size=2))
    both_in = threading.Barrier(2, timeout=30)
    release = threading.Event()
    running, most = 0, 0
    lock = threading.Lock()

    def blocking(_store: AdkStore, _app: str, _user: str) -> dict[str, Any]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        both_in.wait()  # two calls at once, at least
        release.wait(30)
        with lock:
            running -= 1
        return {}

    monkeypatch.setattr(AdkStore, "get_user_state", blocking)

    async def main() -> None:
        calls = asyncio.gather(*(service.get_user_state(app_name=APP, user_id=USER) for _ in range(6)))
        while running < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # room for a third call to start, were the pool larger than the manager's
        release.set()
        await calls
        await service.close()

    asyncio.run(main())
    assert most == 2


def test_max_workers_is_bounded_by_the_managers_pool_and_left_out_over_an_async_manager(make_manager, make_async):
    manager = make_manager(pool_size=4)
    for wrong in (0, 5, 2.0, "2"):
        with pytest.raises(InvalidInput, match="max_workers"):
            StarpodSessionService(manager, max_workers=wrong)
    service = StarpodSessionService(manager, max_workers=4)
    asyncio.run(service.close())
    with pytest.raises(InvalidInput, match="max_workers"):
        StarpodSessionService(make_async(), max_workers=2)


def test_the_service_takes_a_session_manager_or_an_async_one_and_nothing_else(make_manager, make_async):
    manager, async_manager = make_manager(), make_async()
    assert StarpodSessionService(manager).manager is manager
    assert StarpodSessionService(async_manager).manager is async_manager.sync

    class Wrapper:
        sync = manager

    for wrong in (object(), Wrapper()):
        with pytest.raises(InvalidInput, match="manager"):
            StarpodSessionService(wrong)


@pytest.mark.parametrize("facade", ["sync", "async"])
def test_close_waits_for_the_calls_under_way_refuses_later_ones_and_leaves_the_manager_open(
    facade, make_manager, make_async, monkeypatch
):
    manager = make_manager() if facade == "sync" else make_async()
    service = StarpodSessionService(manager)
    entered, release = threading.Event(), threading.Event()
    get_user_state = AdkStore.get_user_state

    def blocking(store: AdkStore, app: str, user: str) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return get_user_state(store, app, user)

    async def main() -> None:
        await service.create_session(app_name=APP, user_id=USER, session_id="s", state={"user:tz": "UTC"})
        monkeypatch.setattr(AdkStore, "get_user_state", blocking)
        call = asyncio.ensure_future(service.get_user_state(app_name=APP, user_id=USER))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        closing = asyncio.ensure_future(service.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # the call under way holds the close
        release.set()
        assert await call == {"tz": "UTC"}
        await closing
        await service.close()  # again: nothing more
        with pytest.raises(StarpodSessionError, match="closed"):
            await service.get_session(app_name=APP, user_id=USER, session_id="s")
        monkeypatch.setattr(AdkStore, "get_user_state", get_user_state)
        # The manager stays open: a new service over it reads what the first stored.
        again = StarpodSessionService(manager)
        assert await again.get_user_state(app_name=APP, user_id=USER) == {"tz": "UTC"}
        await again.close()

    asyncio.run(main())
    assert service_threads() == set()


def test_over_a_session_manager_a_cancelled_append_has_stored_its_event_when_the_cancellation_arrives(manager):
    # As over an AsyncSessionManager: the caller that sees the cancellation knows the write is done, so a
    # retry with the same event id stores nothing twice and a read right away finds it.
    entered, finished = threading.Event(), threading.Event()
    store_append = AdkStore.append_event

    def slow_append(self: AdkStore, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        threading.Event().wait(0.3)  # still running when the cancellation comes
        try:
            return store_append(self, *args, **kwargs)
        finally:
            finished.set()

    async def scenario() -> tuple[bool, int]:
        service = StarpodSessionService(manager)
        try:
            session = await service.create_session(app_name=APP, user_id=USER)
            AdkStore.append_event = slow_append  # type: ignore[method-assign]
            try:
                task = asyncio.ensure_future(service.append_event(session, text_event("user", "kept")))
                await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                done_when_cancelled = finished.is_set()
            finally:
                AdkStore.append_event = store_append  # type: ignore[method-assign]
            got = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
            return done_when_cancelled, len(got.events)
        finally:
            await service.close()

    assert asyncio.run(scenario()) == (True, 1)
