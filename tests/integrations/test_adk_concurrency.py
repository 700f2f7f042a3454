"""Concurrent ADK runs on ``StarpodSessionService`` (issue #29, point 6), on every backend.

Sixteen runs at once, appending to one session (sharing its session object, as
an ADK runner's tasks do) and to sixteen sessions: no event lost, duplicated or
reordered, no stale-session rejection of a write that was not stale. Sixteen
runs each holding a session object of their own for one session: each append
either stores or raises ``StaleSessionError`` having stored nothing, and a run
that gets the session again and retries stores its event exactly once (what
docs/guides/adk.md tells callers). Two services over two managers stand for two
processes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from starpod_session import SessionManager

from ..backends import needs_packages

try:
    from google.adk.errors import StaleSessionError
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    from starpod_session.integrations.adk import StarpodSessionService
except ImportError:  # the module is skipped (pytestmark)
    pass

pytestmark = needs_packages("adk", "google.adk")

RUNS, EVENTS = 16, 5
APP = "app"


@pytest.fixture
def service(manager: SessionManager) -> Iterator[StarpodSessionService]:
    adk = StarpodSessionService(manager, max_workers=RUNS)
    yield adk
    asyncio.run(adk.close())


def event(run: int, step: int, clock: Iterator[int]) -> Event:
    """An event with a timestamp of its own (ADK stamps events when they are made), counting the run's steps."""
    return Event(
        author="user",
        invocation_id=f"run{run}",
        timestamp=1_000_000.0 + next(clock),
        content=types.Content(role="user", parts=[types.Part(text=f"run {run} step {step}")]),
        actions=EventActions(state_delta={f"run{run}": step, "user:last": run}),
    )


def test_sixteen_runs_sharing_one_session_object_lose_duplicate_and_reorder_nothing(service, manager):
    clock = itertools.count()

    async def scenario():
        session = await service.create_session(app_name=APP, user_id="u", session_id="shared")

        async def run(number: int) -> None:
            for step in range(EVENTS):
                await service.append_event(session, event(number, step, clock))
                await asyncio.sleep(0)

        await asyncio.gather(*(run(number) for number in range(RUNS)))
        stored = await service.get_session(app_name=APP, user_id="u", session_id="shared")
        starpod_id = await service.starpod_session_id(app_name=APP, user_id="u", session_id="shared")
        return session, stored, starpod_id

    session, stored, starpod_id = asyncio.run(scenario())
    timestamps = [e.timestamp for e in stored.events]
    assert len(stored.events) == RUNS * EVENTS and len({e.id for e in stored.events}) == RUNS * EVENTS
    assert timestamps == sorted(timestamps) == [e.timestamp for e in session.events]
    assert (
        stored.state
        == session.state
        == {**{f"run{n}": EVENTS - 1 for n in range(RUNS)}, "user:last": stored.state["user:last"]}
    )
    assert len(manager.get_messages(starpod_id)) == RUNS * EVENTS


def test_sixteen_runs_on_sixteen_sessions_store_every_event(service, manager):
    clock = itertools.count()

    async def scenario():
        async def run(number: int) -> None:
            session = await service.create_session(app_name=APP, user_id=f"u{number % 4}", session_id=f"s{number}")
            for step in range(EVENTS):
                await service.append_event(session, event(number, step, clock))

        await asyncio.gather(*(run(number) for number in range(RUNS)))
        return (await service.list_sessions(app_name=APP)).sessions, [
            await service.get_session(app_name=APP, user_id=f"u{n % 4}", session_id=f"s{n}") for n in range(RUNS)
        ]

    listed, sessions = asyncio.run(scenario())
    assert len(listed) == RUNS
    for number, session in enumerate(sessions):
        assert [e.content.parts[0].text for e in session.events] == [f"run {number} step {s}" for s in range(EVENTS)]
    assert len(manager.search_messages("step", limit=1000)) == RUNS * EVENTS


def test_runs_holding_their_own_objects_of_one_session_store_or_are_told_it_is_stale(service, make_manager):
    other_process = StarpodSessionService(make_manager(), max_workers=4)  # a second process on the database
    clock = itertools.count()

    async def scenario():
        await service.create_session(app_name=APP, user_id="u", session_id="contended")
        stale_rejections = 0

        async def run(number: int) -> None:
            nonlocal stale_rejections
            adk = service if number % 2 else other_process
            for step in range(EVENTS):
                mine = event(number, step, clock)
                while True:  # what a caller does with StaleSessionError: get the session again, append again
                    session = await adk.get_session(app_name=APP, user_id="u", session_id="contended")
                    await asyncio.sleep(0)
                    try:
                        await adk.append_event(session, mine)
                        break
                    except StaleSessionError:
                        stale_rejections += 1

        await asyncio.gather(*(run(number) for number in range(RUNS)))
        await other_process.close()
        return stale_rejections, await service.get_session(app_name=APP, user_id="u", session_id="contended")

    stale_rejections, stored = asyncio.run(scenario())
    ids = [e.id for e in stored.events]
    assert len(ids) == len(set(ids)) == RUNS * EVENTS  # nothing lost, nothing twice
    assert [e.timestamp for e in stored.events] == sorted(e.timestamp for e in stored.events)
    for number in range(RUNS):
        mine = [e.content.parts[0].text for e in stored.events if e.invocation_id == f"run{number}"]
        assert mine == [f"run {number} step {s}" for s in range(EVENTS)]
    assert stored.state[f"run{RUNS - 1}"] == EVENTS - 1
    assert stale_rejections > 0  # they did race (each rejection stored nothing: the counts above hold)
