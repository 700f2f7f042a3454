"""Stored ADK events read back (``integrations._adk_events``): the very objects ``Event.model_validate_json``
makes, without the three hooks that cannot change a dump (issue #29, point 5: reads within 1.5x of the floor).

Held to ADK's own reading for every kind of event the store keeps; the hooks are shown not to run on the
fast path and to run, as in ADK, for the texts they could change. No database: the service's reads are
``test_adk.py``'s (and ``test_a_session_read_short_or_long_holds_adks_reading_of_its_events`` below).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starpod_session import SessionManager

from ..backends import needs_packages

try:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import _common as genai_common
    from google.genai import types
    from pydantic import BaseModel, ValidationError

    from starpod_session.adk_store import AdkStore
    from starpod_session.integrations import _adk_events, adk
    from starpod_session.integrations._adk_events import _probe_events as event_kinds
    from starpod_session.integrations._adk_events import events_from_json
    from starpod_session.integrations.adk import (
        _EVENTS_BUILT_ON_THE_LOOP,
        _TEXT_BUILT_ON_THE_LOOP,
        StarpodSessionService,
    )
except ImportError:  # the module is skipped (pytestmark)
    pass

pytestmark = needs_packages("adk", "google.adk")


def dumps(event: Event) -> str:
    return event.model_dump_json(exclude_none=True)  # what the store keeps (StarpodSessionService._stored_event)


def models_of(value: Any, path: str = "event") -> Iterator[tuple[str, BaseModel]]:
    """Every model object in ``value`` with its path."""
    if isinstance(value, BaseModel):
        yield path, value
        for name, item in value.__dict__.items():
            yield from models_of(item, f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from models_of(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from models_of(item, f"{path}[{key!r}]")


def assert_same_as_adks_reading(got: Event, text: str) -> None:
    expected = Event.model_validate_json(text)
    assert got == expected
    assert got.model_dump_json() == expected.model_dump_json()
    got_models, expected_models = list(models_of(got)), list(models_of(expected))
    assert [(path, type(model)) for path, model in got_models] == [
        (path, type(model)) for path, model in expected_models
    ]
    for (path, model), (_path, theirs) in zip(got_models, expected_models, strict=True):
        assert model.model_fields_set == theirs.model_fields_set, path
        assert model.__pydantic_private__ == theirs.__pydantic_private__, path


def adk_hooks() -> dict[Any, str]:
    """The code of each hook this ADK and google-genai have (an older release may lack one), with its name."""
    hooks = {
        "_check_field_type_mismatches": getattr(genai_common.BaseModel, "_check_field_type_mismatches", None),
        "_accept_convenience_kwargs": getattr(Event, "_accept_convenience_kwargs", None),
        "Part.__init__": types.Part.__dict__.get("__init__"),
    }
    return {getattr(hook, "__func__", hook).__code__: name for name, hook in hooks.items() if hook is not None}


@pytest.fixture
def hook_calls() -> Iterator[list[str]]:
    """The names of ADK's and genai's hooks called while the test runs (a profile function sees each call)."""
    hooks = adk_hooks()
    calls: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code in hooks:
            calls.append(hooks[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def spy_on_adks_validator(monkeypatch) -> list[str]:
    """From now on, the texts ``events_from_json`` hands to ADK's own ``Event.model_validate_json``."""
    texts: list[str] = []
    validate = _adk_events._validate_json

    def spy(text: str) -> Event:
        texts.append(text)
        return validate(text)

    monkeypatch.setattr(_adk_events, "_validate_json", spy)
    return texts


@pytest.fixture
def read_by_adk(monkeypatch) -> list[str]:
    """The texts ``events_from_json`` hands to ADK's own validator while the test runs."""
    assert _adk_events._reader() is not None  # built before the spy: its probes are not the test's texts
    return spy_on_adks_validator(monkeypatch)


def test_every_kind_of_stored_event_reads_back_as_adk_reads_it():
    texts = [dumps(event) for event in event_kinds()]
    events = events_from_json(texts)
    assert len(events) == len(texts)
    for got, text in zip(events, texts, strict=True):
        assert_same_as_adks_reading(got, text)
    assert events[1].content.parts[1].inline_data.data == bytes(range(256))


def test_a_dump_is_read_without_the_hooks_that_cannot_change_it(hook_calls):
    assert _adk_events._reader() is not None, "this ADK's events take the stripped schema"
    texts = [dumps(event) for event in event_kinds()]
    hook_calls.clear()
    events_from_json(texts)
    assert hook_calls == []
    for text in texts:  # the fixture sees the hooks where they run: in ADK's own reading
        Event.model_validate_json(text)
    assert set(hook_calls) == set(adk_hooks().values())


@pytest.mark.parametrize(
    "text",
    [
        # _accept_convenience_kwargs moves a convenience key into its field
        '{"author": "user", "message": "hi", "id": "e1", "timestamp": 1.5}',
        '{"author": "user", "state": {"k": 1}, "id": "e2", "timestamp": 1.5}',
        '{"author": "user", "route": "b", "id": "e3", "timestamp": 1.5}',
        '{"author": "user", "node_path": "a/b", "id": "e4", "timestamp": 1.5}',
        # Part.__init__ drops the keywords it names whose value is None (the field is then unset)
        '{"author": "agent", "id": "e5", "timestamp": 1.5, "content": {"parts": [{"text": null, "thought": true}]}}',
    ],
    ids=["message", "state", "route", "node_path", "null-part-keyword"],
)
def test_a_text_a_hook_would_change_is_read_by_adks_validator(text, read_by_adk):
    (got,) = events_from_json([text])
    assert read_by_adk == [text]
    assert_same_as_adks_reading(got, text)


def test_a_null_no_hook_reads_is_read_by_the_stripped_schema(read_by_adk):
    # A tool's response or a state delta holding None: common, and nothing a hook looks at.
    event = Event(
        author="tool",
        content=types.Content(
            role="user",
            parts=[types.Part(function_response=types.FunctionResponse(name="f", response={"error": None}))],
        ),
        actions=EventActions(state_delta={"gone": None}),
    )
    text = dumps(event)
    assert '"error":null' in text and '"gone":null' in text
    (got,) = events_from_json([text])
    assert read_by_adk == []
    assert_same_as_adks_reading(got, text)
    assert got == event


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)


@st.composite
def events(draw: Any) -> Event:
    """An event of random parts, state, metadata and text (texts that look like the hooks' keys included)."""
    part = st.one_of(
        st.builds(lambda text: types.Part(text=text), st.text()),
        st.builds(lambda data: types.Part.from_bytes(data=data, mime_type="application/octet-stream"), st.binary()),
        st.builds(
            lambda name, args: types.Part(function_call=types.FunctionCall(name=name, args=args)),
            st.text(min_size=1, max_size=8),
            JSON_OBJECTS,
        ),
        st.builds(
            lambda name, response: types.Part(function_response=types.FunctionResponse(name=name, response=response)),
            st.text(min_size=1, max_size=8),
            JSON_OBJECTS,
        ),
    )
    return Event(
        author=draw(st.sampled_from(["user", "agent", "tool"])),
        invocation_id=draw(st.text(max_size=8)),
        content=draw(st.none() | st.builds(lambda parts: types.Content(role="model", parts=parts), st.lists(part))),
        actions=EventActions(state_delta=draw(JSON_OBJECTS)),
        custom_metadata=draw(st.none() | JSON_OBJECTS),
        timestamp=draw(st.floats(min_value=0, max_value=4e9)),
    )


@settings(max_examples=300, deadline=None)
@given(events())
def test_any_event_reads_back_as_adk_reads_it(event):
    text = dumps(event)
    (got,) = events_from_json([text])
    assert_same_as_adks_reading(got, text)


def test_a_text_the_schema_refuses_raises_adks_own_validation_error():
    text = '{"author": "agent", "id": "e", "timestamp": "not a time"}'
    with pytest.raises(ValidationError) as ours:
        events_from_json([dumps(Event(author="user")), text])
    with pytest.raises(ValidationError) as adks:
        Event.model_validate_json(text)
    assert ours.value.errors() == adks.value.errors()
    assert ours.value.title == adks.value.title == "Event"


def test_a_stripped_schema_that_reads_the_probes_otherwise_is_never_taken(monkeypatch):
    # As if another ADK or pydantic-core read something differently: here the objects keep the private class.
    monkeypatch.setattr(_adk_events, "_real_class", lambda _cls: lambda value: value)
    _adk_events._reader.cache_clear()
    try:
        assert _adk_events._reader() is None
        texts = [dumps(event) for event in event_kinds()]
        read = spy_on_adks_validator(monkeypatch)
        for got, text in zip(events_from_json(texts), texts, strict=True):
            assert_same_as_adks_reading(got, text)
        assert read == texts, "ADK's own validator read them all"
    finally:
        monkeypatch.undo()
        _adk_events._reader.cache_clear()


def test_a_session_read_short_or_long_holds_adks_reading_of_its_events(manager: SessionManager):
    # 100 events of these kinds (52 KB of JSON) are built on the event loop's thread, 101 in the worker
    # (test_short_reads_are_built_on_the_loop_and_long_or_large_ones_in_the_worker checks where).
    service = StarpodSessionService(manager)
    kinds = event_kinds()

    async def scenario() -> list[tuple[int, list[Event]]]:
        session = await service.create_session(app_name="app", user_id="ada", session_id="s")
        read = []
        for n in range(_EVENTS_BUILT_ON_THE_LOOP + 1):
            event = kinds[n % len(kinds)].model_copy(update={"id": f"e{n:04d}", "timestamp": 1_000.0 + n})
            await service.append_event(session, event)
            if n + 1 in (_EVENTS_BUILT_ON_THE_LOOP, _EVENTS_BUILT_ON_THE_LOOP + 1):
                got = await service.get_session(app_name="app", user_id="ada", session_id="s")
                read.append((n + 1, got.events))
        await service.close()
        return read

    for count, events in asyncio.run(scenario()):
        stored = AdkStore(manager).get_session("app", "ada", "s").events[:count]
        assert len(events) == count
        for got, text in zip(events, stored, strict=True):
            assert_same_as_adks_reading(got, text)


def test_short_reads_are_built_on_the_loop_and_long_or_large_ones_in_the_worker(manager, monkeypatch):
    built_on: list[tuple[int, bool]] = []
    build = adk.events_from_json

    def spy(texts: list[str]) -> list[Event]:
        built_on.append((len(texts), threading.current_thread() is threading.main_thread()))
        return build(texts)

    monkeypatch.setattr(adk, "events_from_json", spy)
    service = StarpodSessionService(manager)
    big = "x" * (_TEXT_BUILT_ON_THE_LOOP // 2)

    async def scenario() -> None:
        for session_id, texts in (
            ("short", ["hi"] * _EVENTS_BUILT_ON_THE_LOOP),
            ("long", ["hi"] * (_EVENTS_BUILT_ON_THE_LOOP + 1)),
            ("large", [big, big]),
        ):
            session = await service.create_session(app_name="app", user_id="ada", session_id=session_id)
            for n, text in enumerate(texts):
                content = types.Content(role="user", parts=[types.Part(text=text)])
                await service.append_event(session, Event(author="user", content=content, timestamp=1_000.0 + n))
            got = await service.get_session(app_name="app", user_id="ada", session_id=session_id)
            assert len(got.events) == len(texts)
        await service.close()

    asyncio.run(scenario())  # the loop runs in this, the main, thread
    assert built_on == [(_EVENTS_BUILT_ON_THE_LOOP, True), (_EVENTS_BUILT_ON_THE_LOOP + 1, False), (2, False)]
