"""``StarpodSessionService``: Google ADK's session service on starpod_session (issue #29), on every backend.

Points 1 and 2: behaving as ADK's SQL stores do (keys, scoped state, configs,
ordering, errors, round trips), and each ADK conversation being a starpod
session (messages, search, transcripts, tool statistics, usage and cost), with an
event, its state delta, its messages and its usage stored in one transaction.
Point 6 (concurrent runs) is ``test_adk_concurrency.py``. ADK's own contract tests
run from a fetched copy of ADK's repository (``adk_conformance_plugin.py``).
Skipped, naming the extra, where ADK is not installed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from starpod_session import InvalidInput, ModelPrice, SessionManager, SessionNotFound, StarpodSessionError
from starpod_session.adk_store import AdkSessionExists, AdkStaleSession
from starpod_session.storage.models import AdkSessionRow, SessionRow

from ..backends import needs_packages
from ..cli.run import as_json
from ..cli.run import run_in_process as cli
from ..helpers import raw_connection

try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.adk.sessions.base_session_service import GetSessionConfig
    from google.genai import types

    from starpod_session.integrations._adk_events import _probe_events as event_kinds
    from starpod_session.integrations.adk import StarpodSessionService
except ImportError:  # the module is skipped (pytestmark)
    pass
else:
    from google.adk.errors import StaleSessionError

pytestmark = needs_packages("adk", "google.adk")

T = TypeVar("T")
APP, USER = "weather", "ada"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture
def service(manager: SessionManager) -> Iterator[StarpodSessionService]:
    adk = StarpodSessionService(manager)
    yield adk
    run(adk.close())


def text_event(author: str, text: str, **fields: Any) -> Event:
    role = "user" if author == "user" else "model"
    return Event(
        author=author, invocation_id="inv", content=types.Content(role=role, parts=[types.Part(text=text)]), **fields
    )


def delta_event(delta: dict[str, Any], **fields: Any) -> Event:
    return Event(author="user", invocation_id="inv", actions=EventActions(state_delta=delta), **fields)


# -- point 1: keys, errors ---------------------------------------------------------------------


def test_a_session_is_created_got_listed_and_deleted_by_app_user_and_id(service):
    async def scenario():
        created = await service.create_session(app_name=APP, user_id=USER, state={"city": "Oslo"})
        got = await service.get_session(app_name=APP, user_id=USER, session_id=created.id)
        listed = await service.list_sessions(app_name=APP, user_id=USER)
        other_user = await service.get_session(app_name=APP, user_id="bob", session_id=created.id)
        other_app = await service.get_session(app_name="other", user_id=USER, session_id=created.id)
        await service.delete_session(app_name=APP, user_id=USER, session_id=created.id)
        gone = await service.get_session(app_name=APP, user_id=USER, session_id=created.id)
        await service.delete_session(app_name=APP, user_id=USER, session_id=created.id)  # silent
        return created, got, listed, other_user, other_app, gone

    created, got, listed, other_user, other_app, gone = run(scenario())
    assert len(created.id) == 36 and created.state == {"city": "Oslo"} and created.events == []
    assert got == created
    assert [s.id for s in listed.sessions] == [created.id]
    assert other_user is None and other_app is None and gone is None


def test_an_existing_id_is_already_exists_and_the_same_id_of_another_user_is_not(service):
    async def scenario():
        await service.create_session(app_name=APP, user_id=USER, session_id="s1")
        with pytest.raises(AlreadyExistsError) as raised:
            await service.create_session(app_name=APP, user_id=USER, session_id="s1")
        other = await service.create_session(app_name=APP, user_id="bob", session_id="s1")
        return raised.value, other

    error, other = run(scenario())
    assert isinstance(error, AdkSessionExists) and isinstance(error, StarpodSessionError)
    assert other.user_id == "bob" and other.id == "s1"


def test_ids_with_whitespace_are_stripped_by_create_get_and_delete(service):
    """As ADK 2.13's SQLite store does (ADK 2.7.1's stores strip in ``create_session`` only)."""

    async def scenario():
        stripped = await service.create_session(app_name=APP, user_id=USER, session_id="  s2 ")
        blank = await service.create_session(app_name=APP, user_id=USER, session_id="   ")
        got = await service.get_session(app_name=APP, user_id=USER, session_id=" s2")
        starpod_ids = {
            await service.starpod_session_id(app_name=APP, user_id=USER, session_id=given) for given in ("s2", "\ts2 ")
        }
        await service.delete_session(app_name=APP, user_id=USER, session_id="s2  ")
        gone = await service.get_session(app_name=APP, user_id=USER, session_id="s2")
        return stripped, blank, got, starpod_ids, gone

    stripped, blank, got, starpod_ids, gone = run(scenario())
    assert stripped.id == "s2" and got is not None and got.id == "s2"
    assert len(starpod_ids) == 1 and None not in starpod_ids
    assert gone is None
    assert len(blank.id) == 36  # a generated id, as for none


def test_a_session_stored_under_an_id_with_whitespace_is_found_under_that_exact_id(service, db_target):
    """A row written with its id as given (ADK's ``DatabaseSessionService`` keeps padded ids verbatim, and its
    rows may be moved into these tables) is what create, get and delete of that exact id name, not the
    stripped id's session; the service itself never stores such an id."""
    padded = "  pad "

    async def store_padded():
        await service.create_session(app_name=APP, user_id=USER, session_id="pad", state={"which": "padded"})

    run(store_padded())
    # Given its id as it is: the ADK row and its starpod session's key, as create_session would have stored them.
    sessions, adk_sessions = SessionRow.__table__, AdkSessionRow.__table__
    with raw_connection(db_target, begin=True) as connection:
        starpod_id = connection.execute(
            sa.select(adk_sessions.c.session_id).where(adk_sessions.c.id == "pad")
        ).scalar_one()
        connection.execute(sa.update(adk_sessions).where(adk_sessions.c.id == "pad").values(id=padded))
        connection.execute(
            sa.update(sessions).where(sessions.c.id == starpod_id).values(channel_session_key=f"adk:{APP}:{padded}")
        )

    async def scenario():
        found = await service.get_session(app_name=APP, user_id=USER, session_id=padded)
        stripped_before = await service.get_session(app_name=APP, user_id=USER, session_id="pad")
        with pytest.raises(AlreadyExistsError):
            await service.create_session(app_name=APP, user_id=USER, session_id=padded)
        plain = await service.create_session(app_name=APP, user_id=USER, session_id="pad", state={"which": "plain"})
        await service.append_event(found, text_event("user", "to the padded one"))
        again = await service.get_session(app_name=APP, user_id=USER, session_id=padded)
        await service.delete_session(app_name=APP, user_id=USER, session_id=padded)
        kept = await service.get_session(app_name=APP, user_id=USER, session_id="pad")
        listed = await service.list_sessions(app_name=APP, user_id=USER)
        # Once it is gone, the padded id names the stripped id's session.
        then = await service.get_session(app_name=APP, user_id=USER, session_id=padded)
        return found, stripped_before, plain, again, kept, listed, then

    found, stripped_before, plain, again, kept, listed, then = run(scenario())
    assert found is not None and found.id == padded and found.state == {"which": "padded"}
    assert stripped_before is None
    assert plain.id == "pad" and plain.state == {"which": "plain"}
    assert [e.content.parts[0].text for e in again.events] == ["to the padded one"]
    assert kept is not None and kept.state == {"which": "plain"} and kept.events == []
    assert [s.id for s in listed.sessions] == ["pad"]
    assert then == kept


def test_appending_to_a_missing_or_deleted_session_is_session_not_found(service):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        await service.delete_session(app_name=APP, user_id=USER, session_id=session.id)
        with pytest.raises(SessionNotFoundError) as raised:
            await service.append_event(session, text_event("user", "hello?"))
        return raised.value

    error = run(scenario())
    assert isinstance(error, SessionNotFound)


def test_a_stale_session_object_is_refused_and_stores_nothing(service):
    async def scenario():
        first = await service.create_session(app_name=APP, user_id=USER)
        second = await service.get_session(app_name=APP, user_id=USER, session_id=first.id)
        await service.append_event(second, text_event("user", "winner", timestamp=first.last_update_time + 1))
        with pytest.raises(StaleSessionError) as raised:
            await service.append_event(first, delta_event({"k": 1}, timestamp=first.last_update_time + 2))
        final = await service.get_session(app_name=APP, user_id=USER, session_id=first.id)
        # A copy made before a write is stale too; one made after it is not.
        copy = final.model_copy(deep=True)
        await service.append_event(copy, text_event("user", "from the copy"))
        return raised.value, final

    error, final = run(scenario())
    assert isinstance(error, AdkStaleSession)
    assert [e.content.parts[0].text for e in final.events] == ["winner"] and "k" not in final.state


def test_a_session_object_built_by_hand_is_stale_only_once_storage_has_moved_past_it(service):
    async def scenario():
        stored = await service.create_session(app_name=APP, user_id=USER)
        by_hand = Session(id=stored.id, app_name=APP, user_id=USER, last_update_time=stored.last_update_time)
        await service.append_event(by_hand, text_event("user", "one", timestamp=stored.last_update_time + 1))
        late = Session(id=stored.id, app_name=APP, user_id=USER, last_update_time=stored.last_update_time)
        with pytest.raises(StaleSessionError):
            await service.append_event(late, text_event("user", "two", timestamp=stored.last_update_time + 2))

    from google.adk.sessions.session import Session

    run(scenario())


def test_an_append_never_writes_a_state_remembered_from_a_session_deleted_and_created_again(manager):
    # The service remembers the state its own appends left, to append the next event without reading it
    # back; another writer deleting the session and creating it again under the same id must not let
    # that memory overwrite the new session's state.
    async def scenario():
        ours, theirs = StarpodSessionService(manager), StarpodSessionService(manager)
        try:
            old = await ours.create_session(app_name=APP, user_id=USER, session_id="again", state={"old": 1})
            await ours.append_event(old, delta_event({"k": 1}, timestamp=old.last_update_time + 1))
            await theirs.delete_session(app_name=APP, user_id=USER, session_id="again")
            new = await theirs.create_session(app_name=APP, user_id=USER, session_id="again", state={"new": 2})
            await theirs.append_event(new, delta_event({"k": 2}, timestamp=new.last_update_time + 1))
            # ``old`` is at the revision the new session is now at: not stale, but its state is not the stored one.
            await ours.append_event(old, delta_event({"k": 3}, timestamp=new.last_update_time + 2))
            return await theirs.get_session(app_name=APP, user_id=USER, session_id="again")
        finally:
            await ours.close()
            await theirs.close()

    got = run(scenario())
    assert got.state == {"new": 2, "k": 3}


def test_a_session_read_by_one_service_is_stale_once_another_service_appended_to_it(manager):
    # A read is remembered to spare the next append a locking read; the stored revision still decides.
    async def scenario():
        ours, theirs = StarpodSessionService(manager), StarpodSessionService(manager)
        try:
            created = await theirs.create_session(app_name=APP, user_id=USER)
            read = await ours.get_session(app_name=APP, user_id=USER, session_id=created.id)
            await theirs.append_event(created, text_event("user", "theirs", timestamp=created.last_update_time + 1))
            with pytest.raises(StaleSessionError):
                await ours.append_event(read, text_event("user", "ours", timestamp=created.last_update_time + 2))
            return await theirs.get_session(app_name=APP, user_id=USER, session_id=created.id)
        finally:
            await ours.close()
            await theirs.close()

    got = run(scenario())
    assert [e.content.parts[0].text for e in got.events] == ["theirs"]


def test_an_append_retried_after_its_commit_landed_is_not_stale_and_stores_once(manager):
    # A retry of an append whose commit landed but whose answer was lost (a cut connection) meets its own
    # event one revision past the one it read: that is the same append, not a concurrent writer.
    from starpod_session.adk_store import AdkStore

    service_event = StarpodSessionService(manager)._stored_event
    store = AdkStore(manager)
    created = store.create_session(APP, USER)
    event = service_event(text_event("user", "once", timestamp=2.0), USER)
    seen = {"revision": created.revision, "last_update_time": created.last_update_time, "last_event_id": None}
    first = store.append_event(APP, USER, created.id, event, **seen)
    again = AdkStore(manager).append_event(APP, USER, created.id, event, **seen)  # nothing remembered
    assert (first.stored, again.stored) == (True, False) and again.revision == first.revision
    late = service_event(text_event("user", "late", timestamp=3.0), USER)
    with pytest.raises(AdkStaleSession):  # another event at that old revision is a concurrent writer's loss
        store.append_event(APP, USER, created.id, late, **seen)
    got = store.get_session(APP, USER, created.id)
    assert got is not None and len(got.events) == 1


# -- point 1: state ------------------------------------------------------------------------------


def test_state_scopes_are_stored_with_their_event_and_merged_with_prefixes(service):
    async def scenario():
        one = await service.create_session(
            app_name=APP, user_id=USER, state={"app:units": "metric", "user:lang": "no", "k": 1, "temp:t": 0}
        )
        await service.append_event(one, delta_event({"app:v": 2, "user:w": 3, "k": 4, "temp:scratch": 5}))
        in_memory = dict(one.state)
        two = await service.create_session(app_name=APP, user_id=USER)
        stranger = await service.create_session(app_name=APP, user_id="bob")
        other_app = await service.create_session(app_name="other", user_id=USER)
        got = await service.get_session(app_name=APP, user_id=USER, session_id=one.id)
        user_state = await service.get_user_state(app_name=APP, user_id=USER)
        return in_memory, two, stranger, other_app, got, user_state

    in_memory, two, stranger, other_app, got, user_state = run(scenario())
    assert in_memory == {"app:units": "metric", "user:lang": "no", "k": 4, "app:v": 2, "user:w": 3, "temp:scratch": 5}
    assert got.state == {"k": 4, "app:units": "metric", "app:v": 2, "user:lang": "no", "user:w": 3}
    assert got.events[0].actions.state_delta == {"app:v": 2, "user:w": 3, "k": 4}  # temp: never stored
    assert two.state == {"app:units": "metric", "app:v": 2, "user:lang": "no", "user:w": 3}
    assert stranger.state == {"app:units": "metric", "app:v": 2}
    assert other_app.state == {}  # app and user state belong to one app
    assert user_state == {"lang": "no", "w": 3}


def test_a_delta_replaces_values_whole_stores_none_and_keeps_types(service):
    async def scenario():
        session = await service.create_session(
            app_name=APP, user_id=USER, state={"profile": {"a": 1, "b": 2}, "flag": False, "n": 1}
        )
        await service.append_event(session, delta_event({"profile": {"a": 9}, "n": None, "f": 0.1 + 0.2}))
        return await service.get_session(app_name=APP, user_id=USER, session_id=session.id)

    got = run(scenario())
    assert got.state == {"profile": {"a": 9}, "flag": False, "n": None, "f": 0.1 + 0.2}


def test_a_value_json_cannot_hold_is_stored_as_its_string_with_the_event(service):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        await service.append_event(session, delta_event({"callback": lambda: 1, "ok": 2}))
        return await service.get_session(app_name=APP, user_id=USER, session_id=session.id)

    got = run(scenario())
    assert got.state["ok"] == 2 and isinstance(got.state["callback"], str) and len(got.events) == 1


def test_an_event_its_delta_its_messages_and_its_usage_commit_together_or_not_at_all(service, manager, monkeypatch):
    from starpod_session.storage.repositories.usage import UsageRepository

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the disk is on fire")

    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER, state={"k": 0})
        event = text_event(
            "model", "hello", usage_metadata=types.GenerateContentResponseUsageMetadata(prompt_token_count=3)
        )
        event.actions.state_delta.update({"k": 1, "app:a": 1, "user:u": 1})
        monkeypatch.setattr(UsageRepository, "append", broken)
        with pytest.raises(RuntimeError):
            await service.append_event(session, event)
        monkeypatch.undo()
        return session, await service.get_session(app_name=APP, user_id=USER, session_id=session.id)

    session, got = run(scenario())
    assert got.events == [] and got.state == {"k": 0} and got.last_update_time == session.last_update_time
    starpod_id = run(service.starpod_session_id(app_name=APP, user_id=USER, session_id=session.id))
    assert manager.get_messages(starpod_id) == [] and manager.cost_overview().total_turns == 0


# -- point 1: events -----------------------------------------------------------------------------


def test_events_round_trip_equal(service):
    # One event of each kind (text, thought, inline bytes, file data, function calls and responses, code,
    # actions, usage metadata, grounding, custom metadata, errors), a second apart in that order.
    events = [event.model_copy(update={"timestamp": 1_700_000_000.123456 + n}) for n, event in enumerate(event_kinds())]

    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        for event in events:
            await service.append_event(session, event)
        return session, await service.get_session(app_name=APP, user_id=USER, session_id=session.id)

    session, got = run(scenario())
    assert got.events == events
    assert got == session
    assert got.last_update_time == events[-1].timestamp


def test_partial_events_are_not_stored_and_last_update_time_follows_the_events(service):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        created_at = session.last_update_time
        await service.append_event(session, text_event("model", "thinking...", partial=True))
        await service.append_event(session, text_event("model", "done", timestamp=created_at + 10))
        got = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
        return created_at, session, got

    created_at, session, got = run(scenario())
    assert (
        [e.content.parts[0].text for e in got.events] == ["done"] == [e.content.parts[0].text for e in session.events]
    )
    assert got.last_update_time == session.last_update_time == created_at + 10


def test_get_session_config_keeps_recent_events_and_those_from_a_time_on(service):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        for second in (5, 1, 3, 2, 4):  # appended out of order: read back in timestamp order
            await service.append_event(session, text_event("user", f"t{second}", timestamp=1000.0 + second))

        async def texts(**config: Any) -> list[str] | None:
            got = await service.get_session(
                app_name=APP, user_id=USER, session_id=session.id, config=GetSessionConfig(**config) if config else None
            )
            return [e.content.parts[0].text for e in got.events]

        return [
            await texts(),
            await texts(num_recent_events=0),
            await texts(num_recent_events=2),
            await texts(after_timestamp=1003.0),
            await texts(after_timestamp=1003.0, num_recent_events=1),
            await texts(after_timestamp=2000.0),
        ]

    assert run(scenario()) == [["t1", "t2", "t3", "t4", "t5"], [], ["t4", "t5"], ["t3", "t4", "t5"], ["t5"], []]


def test_tied_timestamps_are_ordered_by_event_id(service):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        for event_id in ("e_z", "e_a", "e_m"):
            await service.append_event(session, Event(author="user", id=event_id, timestamp=100.0))
        recent = await service.get_session(
            app_name=APP, user_id=USER, session_id=session.id, config=GetSessionConfig(num_recent_events=2)
        )
        return await service.get_session(app_name=APP, user_id=USER, session_id=session.id), recent

    whole, recent = run(scenario())
    assert [e.id for e in whole.events] == ["e_a", "e_m", "e_z"] and [e.id for e in recent.events] == ["e_m", "e_z"]


def test_an_event_id_appended_again_is_stored_once(service):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        event = delta_event({"n": 1})
        await service.append_event(session, event)
        await service.append_event(session, event)  # the same object
        await service.append_event(session, event.model_copy(deep=True))  # an equal copy
        return session, await service.get_session(app_name=APP, user_id=USER, session_id=session.id)

    session, got = run(scenario())
    assert [e.id for e in got.events] == [e.id for e in session.events] and len(got.events) == 1


def test_list_sessions_is_in_adk_order_for_one_user_or_all_without_events(service):
    async def scenario():
        for user, session_id in (("bob", "b"), ("ada", "a"), ("ada", "c")):
            await service.create_session(app_name=APP, user_id=user, session_id=session_id, state={"user:u": user})
        a = await service.get_session(app_name=APP, user_id="ada", session_id="a")
        await service.append_event(a, text_event("user", "later", timestamp=a.last_update_time + 60))
        return (
            await service.list_sessions(app_name=APP, user_id="ada"),
            await service.list_sessions(app_name=APP),
            await service.list_sessions(app_name="none"),
        )

    of_ada, of_app, of_none = run(scenario())
    assert [s.id for s in of_ada.sessions] == ["c", "a"]
    assert [(s.user_id, s.id) for s in of_app.sessions] == [("bob", "b"), ("ada", "c"), ("ada", "a")]
    assert all(s.events == [] for s in of_app.sessions) and of_none.sessions == []
    assert {s.id: s.state for s in of_app.sessions} == {
        "b": {"user:u": "bob"},
        "c": {"user:u": "ada"},
        "a": {"user:u": "ada"},
    }


def test_listed_sessions_are_what_adks_constructor_makes_each_with_its_own_state_and_events(service):
    from google.adk.sessions.session import Session

    async def scenario():
        for n in range(3):
            await service.create_session(app_name=APP, user_id=USER, session_id=f"s{n}", state={"n": n, "app:a": 1})
        return await service.list_sessions(app_name=APP, user_id=USER)

    listed = run(scenario()).sessions
    for got in listed:
        built = Session(
            id=got.id, app_name=APP, user_id=USER, state=dict(got.state), last_update_time=got.last_update_time
        )
        assert got == built and repr(got) == repr(built)
        assert got.model_fields_set == built.model_fields_set
        assert got.model_dump(exclude_unset=True) == built.model_dump(exclude_unset=True)
        assert got.model_dump_json() == built.model_dump_json()
    first, second = listed[0], listed[1]
    first.events.append(text_event("user", "hi"))
    first.state["n"] = 99
    first._storage_update_marker = "x"
    assert second.events == [] and second.state == {"n": 1, "app:a": 1} and second._storage_update_marker is None


#: Ids and state values a listing must hand back exactly as stored (MariaDB packs a listing into one JSON text).
AWKWARD_IDS = ('quote"d', "back\\slash", "tab\tnew\nline", "ctrl\x01\x1fend", "Tromsø ☃ 🦀", "[1,2]", "{}", "u\u2028x")
#: Update times whose text takes 17 digits, none at all after the point, or an exponent.
AWKWARD_TIMES = (1796482163.5484128, 1796482164.0, 0.1 + 0.2, 1e-7, 2.0**53 + 2)


def test_listed_sessions_hold_exactly_what_get_session_reads(service, backend, monkeypatch):
    from starpod_session import adk_store

    unpacked: list[object] = []
    adk_store_unpacked = adk_store._unpacked

    def spied(*args: object) -> object:
        unpacked.append(adk_store_unpacked(*args))
        return unpacked[-1]

    monkeypatch.setattr(adk_store, "_unpacked", spied)

    async def scenario():
        for n, session_id in enumerate(AWKWARD_IDS):
            state = {"n": n, "text": session_id, "nested": {"list": [1.5, None, True], "é": "\\"}, "user:u": n}
            session = await service.create_session(app_name=APP, user_id=USER, session_id=session_id, state=state)
            at = AWKWARD_TIMES[n % len(AWKWARD_TIMES)] + n * 1e-3 * (n % 2)
            await service.append_event(session, text_event("user", "hi", timestamp=at))
        listed = (await service.list_sessions(app_name=APP, user_id=USER)).sessions
        of_app = (await service.list_sessions(app_name=APP)).sessions
        got = [await service.get_session(app_name=APP, user_id=USER, session_id=s.id) for s in listed]
        return listed, of_app, got

    listed, of_app, got = run(scenario())
    assert sorted(s.id for s in listed) == sorted(AWKWARD_IDS)
    assert [(s.id, s.state, s.last_update_time) for s in listed] == [(g.id, g.state, g.last_update_time) for g in got]
    assert [(s.user_id, s.id, s.state, s.last_update_time) for s in of_app] == [
        (s.user_id, s.id, s.state, s.last_update_time) for s in listed
    ]
    assert all(type(s.last_update_time) is float for s in listed + of_app)
    assert [s.last_update_time for s in listed] == sorted(s.last_update_time for s in listed)
    # Where the server packs a listing, these awkward values came through the packed text, not the fallback.
    assert unpacked == [] if backend != "mariadb" else (len(unpacked) == 2 and None not in unpacked)


def test_a_packed_listing_whose_state_is_no_json_object_is_read_row_by_row():
    from starpod_session.adk_store import _unpacked

    # Another writer's state that is a JSON string or a list: the row-by-row read decides what it is.
    assert _unpacked('[["s1",{"a":1},1.5],["s2","{\\"a\\":1}",2.0]]', 2, "ada") is None
    assert _unpacked('[["s1",[["a",1]],1.5]]', 1, "ada") is None
    assert _unpacked('[["s1","ada",{"a":1},1]]', 1, None) == [("s1", "ada", {"a": 1}, 1.0)]


def test_a_listing_longer_than_the_server_packs_is_read_whole(make_manager, monkeypatch):
    from starpod_session.backends import mariadb

    # MariaDB packs a listing into one GROUP_CONCAT: let it hold a few hundred bytes, so that it is cut.
    monkeypatch.setattr(mariadb, "GROUP_CONCAT_MAX_LEN", 300)
    service = StarpodSessionService(make_manager())

    async def scenario():
        for n in range(30):
            await service.create_session(app_name=APP, user_id=f"u{n % 3}", session_id=f"s{n:02d}", state={"n": n})
        return (
            await service.list_sessions(app_name=APP, user_id="u1"),
            await service.list_sessions(app_name=APP),
        )

    try:
        of_user, of_app = run(scenario())
    finally:
        run(service.close())
    assert [(s.id, s.state) for s in of_user.sessions] == [(f"s{n:02d}", {"n": n}) for n in range(1, 30, 3)]
    assert sorted((s.user_id, s.id, s.state["n"]) for s in of_app.sessions) == sorted(
        (f"u{n % 3}", f"s{n:02d}", n) for n in range(30)
    )


def test_a_packed_listing_cut_anywhere_is_never_taken_for_a_whole_one():
    from starpod_session.adk_store import _unpacked

    rows = [["s1", {"a": ']"', "b": [1, {"c": "],["}]}, 1.5], ["s2", {}, 2.0], ["s3", {"x": 1}, 3.25]]
    text = json.dumps(rows, separators=(",", ":"))
    assert _unpacked(text, 3, "ada") == [
        ("s1", "ada", rows[0][1], 1.5),
        ("s2", "ada", {}, 2.0),
        ("s3", "ada", {"x": 1}, 3.25),
    ]
    # The server cuts the GROUP_CONCAT inside the array, then closes the array.
    for end in range(1, len(text) - 1):
        assert _unpacked(text[:end] + "]", 3, "ada") is None, text[:end]
    assert _unpacked(None, 3, "ada") is None


def test_bad_arguments_raise_invalid_input_and_write_nothing(service, manager):
    async def scenario():
        with pytest.raises(InvalidInput):
            await service.create_session(app_name="", user_id=USER)
        with pytest.raises(InvalidInput):
            await service.create_session(app_name=APP, user_id="x" * 256)
        with pytest.raises(InvalidInput):
            await service.create_session(app_name=APP, user_id=USER, session_id="nul\x00")

    run(scenario())
    assert manager.list_sessions(10) == []


# -- point 2: ADK conversations are starpod sessions ------------------------------------------------


def test_an_adk_conversation_is_searchable_exportable_and_in_the_tool_statistics(service, manager):
    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER, session_id="trip")
        await service.append_event(session, text_event("user", "Will it snow in Tromsø tomorrow?"))
        call = types.Part(function_call=types.FunctionCall(id="c1", name="forecast", args={"city": "Tromsø"}))
        await service.append_event(session, Event(author="agent", content=types.Content(role="model", parts=[call])))
        failed = types.FunctionResponse(id="c1", name="forecast", response={"error": "timeout"})
        answer = types.Content(role="user", parts=[types.Part(function_response=failed)])
        await service.append_event(session, Event(author="agent", content=answer))
        await service.append_event(session, text_event("agent", "Snow is likely."))
        await service.append_event(session, delta_event({"k": 1}))  # no content: no message
        return await service.starpod_session_id(app_name=APP, user_id=USER, session_id="trip")

    starpod_id = run(scenario())
    messages = manager.get_messages(starpod_id)
    assert [m.role for m in messages] == ["user", "tool_use", "tool_result", "assistant"]
    assert json.loads(messages[1].content) == {"id": "c1", "name": "forecast", "input": {"city": "Tromsø"}}
    meta = manager.get_session(starpod_id)
    assert (
        meta.title == "Will it snow in Tromsø tomorrow?" and meta.user_id == USER and meta.triggered_by == "google-adk"
    )
    [hit] = manager.search_messages("snow tomorrow")
    assert hit.session_id == starpod_id
    (tool,) = manager.cost_overview().by_tool
    assert (tool.tool_name, tool.invocations, tool.errors) == ("forecast", 1, 1)
    manager.close_session(starpod_id, "asked about snow")
    transcript = manager.export_transcript(starpod_id).read_text()
    assert "Will it snow in Tromsø tomorrow?" in transcript and "Snow is likely." in transcript


def test_the_command_line_lists_shows_searches_and_costs_an_adk_conversation(manager, db_target):
    """``starpod-session`` run on the database an ADK agent wrote to sees its conversation like any other."""
    service = StarpodSessionService(manager, prices={"gemini-2.5-flash": ModelPrice(input=0.3, output=2.5)})
    usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=1_000_000, candidates_token_count=100_000)

    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER, session_id="trip")
        await service.append_event(session, text_event("user", "Will it snow in Tromsø tomorrow?"))
        call = types.Part(function_call=types.FunctionCall(id="c1", name="forecast", args={"city": "Tromsø"}))
        await service.append_event(session, Event(author="agent", content=types.Content(role="model", parts=[call])))
        result = types.FunctionResponse(id="c1", name="forecast", response={"depth_cm": 12})
        answer = types.Content(role="user", parts=[types.Part(function_response=result)])
        await service.append_event(session, Event(author="agent", content=answer))
        reply = text_event("agent", "Snow is likely.", usage_metadata=usage, model_version="gemini-2.5-flash-001")
        await service.append_event(session, reply)
        starpod_id = await service.starpod_session_id(app_name=APP, user_id=USER, session_id="trip")
        await service.close()
        return starpod_id

    starpod_id = run(scenario())
    cost = 1.0 * 0.3 + 0.1 * 2.5

    [listed] = as_json(cli("sessions", "list", "--user", USER, "--json", db=db_target))
    assert (listed["id"], listed["channel_session_key"], listed["triggered_by"], listed["title"]) == (
        starpod_id,
        f"adk:{APP}:trip",
        "google-adk",
        "Will it snow in Tromsø tomorrow?",
    )
    shown = as_json(cli("sessions", "show", starpod_id, "--json", db=db_target))
    assert [m["role"] for m in shown["messages"]] == ["user", "tool_use", "tool_result", "assistant"]
    assert shown["usage"]["total_cost_usd"] == pytest.approx(cost) and shown["usage"]["total_turns"] == 1
    hits = as_json(cli("search", "snow", "--json", db=db_target))
    assert {(hit["session_id"], hit["role"], hit["user_id"]) for hit in hits} == {
        (starpod_id, "user", USER),
        (starpod_id, "assistant", USER),
    }
    overview = as_json(cli("costs", "--json", db=db_target))["overview"]
    assert [(u["user_id"], u["total_turns"]) for u in overview["by_user"]] == [(USER, 1)]
    [model] = overview["by_model"]
    assert model["model"] == "gemini-2.5-flash-001" and model["total_cost_usd"] == pytest.approx(cost)
    assert [(t["tool_name"], t["invocations"], t["errors"]) for t in overview["by_tool"]] == [("forecast", 1, 0)]


def test_model_events_with_usage_metadata_are_usage_rows_priced_from_the_table(manager):
    prices = {"gemini-2.5-flash": ModelPrice(input=0.3, output=2.5, cache_read=0.075)}
    service = StarpodSessionService(manager, prices=prices)
    usage = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=1_000_000, cached_content_token_count=400_000, candidates_token_count=100_000
    )

    async def scenario():
        session = await service.create_session(app_name=APP, user_id=USER)
        await service.append_event(
            session, text_event("agent", "hi", usage_metadata=usage, model_version="gemini-2.5-flash-001")
        )
        await service.append_event(session, text_event("agent", "hi", usage_metadata=usage, model_version="unpriced"))
        await service.close()

    run(scenario())
    overview = manager.cost_overview()
    by_model = {m.model: m for m in overview.by_model}
    flash = by_model["gemini-2.5-flash-001"]
    assert (flash.total_input_tokens, flash.total_cache_read, flash.total_output_tokens) == (600_000, 400_000, 100_000)
    assert flash.total_cost_usd == pytest.approx(0.6 * 0.3 + 0.4 * 0.075 + 0.1 * 2.5)
    assert by_model["unpriced"].total_cost_usd == 0 and overview.total_turns == 2
    assert [u.user_id for u in overview.by_user] == [USER]


def test_deleting_an_adk_session_keeps_its_usage_and_deleting_its_starpod_session_deletes_it(service, manager):
    usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=5, candidates_token_count=1)

    async def scenario():
        one = await service.create_session(app_name=APP, user_id=USER, session_id="one")
        two = await service.create_session(app_name=APP, user_id=USER, session_id="two")
        for session in (one, two):
            await service.append_event(session, text_event("agent", "hello", usage_metadata=usage))
        two_id = await service.starpod_session_id(app_name=APP, user_id=USER, session_id="two")
        await service.delete_session(app_name=APP, user_id=USER, session_id="one")
        manager.forget_user(USER)
        return two_id, await service.list_sessions(app_name=APP)

    two_id, listed = run(scenario())
    assert listed.sessions == [] and manager.get_session(two_id) is None
    assert manager.cost_overview().total_turns == 2  # usage rows outlive sessions
