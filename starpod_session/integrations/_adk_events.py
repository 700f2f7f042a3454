"""ADK ``Event`` objects again from the JSON the ADK store wrote (the ``adk`` extra).

``Event.model_validate_json`` of an event spends about two thirds of its time
in three Python hooks of ADK's and google-genai's models, each a no-op for JSON
that ADK itself dumped (the store keeps ``event.model_dump_json(exclude_none=True)``):

* google-genai's ``_check_field_type_mismatches``, on every genai model, only
  warns when a field holds a model *instance* of the wrong class; JSON holds no
  instances;
* ``Event._accept_convenience_kwargs`` moves the keys ``message``, ``state``,
  ``route`` and ``node_path`` into fields; a dump holds none of them;
* ``Part.__init__`` takes a positional value and drops the keywords it names
  whose value is ``None``; JSON passes keywords only, and a dump without
  ``None`` has nothing to drop.

:func:`events_from_json` validates with ADK's own schema (pydantic's types,
defaults, aliases, enums, bytes and every other validator) minus those hooks:
the same objects, equal and of the same classes, in about a third of the time.
pydantic-core reuses a model class's own finished validator wherever that class
appears in a schema, hooks and all, so the schema names a private subclass of
each model class instead (one with no validator of its own and the same
layout) and an after-validator gives each object its real class back.

It stays on ``Event.model_validate_json`` for a text that a hook could change
(one with a convenience key, or a ``null`` anywhere), for one the stripped
schema refuses, and altogether if, in this process's ADK and pydantic, the
stripped schema cannot be built or reads probe events other than ADK does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import _common as genai_common
from google.genai import types
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator

__all__ = ["events_from_json"]

#: A text ``Event._accept_convenience_kwargs`` would change (a convenience key) or ``Part.__init__`` read
#: otherwise than the schema (a ``null``: for the keywords it drops); such a text takes ADK's validator.
_HOOKED_TEXT = re.compile(r'"(?:message|state|route|node_path)"\s*:|:\s*null\b')

_validate_json = Event.model_validate_json


def events_from_json(texts: Iterable[str]) -> list[Event]:
    """The ``Event`` of each JSON text the ADK store wrote, in order; equal to ``Event.model_validate_json``'s."""
    fast = _stripped_validator()
    if fast is None:
        return [_validate_json(text) for text in texts]
    hooked = _HOOKED_TEXT.search
    events = []
    for text in texts:
        if hooked(text) is None:
            try:
                events.append(fast(text))
                continue
            except ValidationError:
                pass  # ADK's own validator says what is wrong, or reads what the hooks would mend
        events.append(_validate_json(text))
    return events


@functools.cache
def _stripped_validator() -> Callable[[str], Event] | None:
    """``validate_json`` of ADK's ``Event`` schema without the no-op hooks, or ``None`` where it cannot be had
    or reads the probe events otherwise than ``Event.model_validate_json``."""
    try:
        schema = _Stripper().schema(Event.__pydantic_core_schema__)
        validate: Callable[[str], Event] = SchemaValidator(schema).validate_json
        for probe in _probe_events():
            text = probe.model_dump_json(exclude_none=True)
            got, expected = validate(text), _validate_json(text)
            # pydantic's == compares the classes too: an object left with its private class is unequal.
            if got != expected or got.model_dump_json() != expected.model_dump_json():
                return None
    except Exception:  # any surprise of another ADK or pydantic: ADK's own validator, which is always right
        return None
    return validate


class _Stripper:
    """Rewrites a pydantic-core schema: the no-op hooks left out, each model class behind a private subclass."""

    def __init__(self) -> None:
        hooks = (
            getattr(genai_common.BaseModel, "_check_field_type_mismatches", None),
            getattr(Event, "_accept_convenience_kwargs", None),
        )
        self._hooks = {getattr(hook, "__func__", hook) for hook in hooks if hook is not None}
        self._shadows: dict[type[BaseModel], type[BaseModel]] = {}

    def schema(self, node: Any) -> Any:
        """``node`` rewritten (a new tree; ``node`` is left as it is)."""
        if isinstance(node, list):
            return [self.schema(item) for item in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind == "function-before" and self._is_hook(node.get("function")):
            return self.schema(node["schema"])
        rewritten = {key: self.schema(value) for key, value in node.items()}
        if kind == "model":
            return self._model(rewritten)
        return rewritten

    def _is_hook(self, function: Any) -> bool:
        called = function.get("function") if isinstance(function, dict) else function
        return getattr(called, "__func__", called) in self._hooks

    def _model(self, node: dict[str, Any]) -> dict[str, Any]:
        cls = node["cls"]
        if node.get("custom_init"):
            if cls is not types.Part:
                return node  # an __init__ we do not know: the class's own validator, as ADK runs it
            node["custom_init"] = False  # Part's: see the module's docstring
        node["cls"] = self._shadow(cls)
        wrapper: dict[str, Any] = {
            "type": "function-after",
            "function": {"type": "no-info", "function": _real_class(cls)},
            "schema": node,
        }
        if "ref" in node:  # references name the wrapper, so each use gets its real class back
            wrapper["ref"] = node.pop("ref")
        return wrapper

    def _shadow(self, cls: type[BaseModel]) -> type[BaseModel]:
        shadow = self._shadows.get(cls)
        if shadow is None:
            name = f"_Stored{cls.__name__}"
            # type.__new__ and not the metaclass: pydantic would build (and pydantic-core then reuse) a
            # validator of the subclass's own, hooks and all. No slots: the layout stays the class's,
            # so an object can take its real class back.
            namespace = {"__slots__": (), "__module__": __name__, "__qualname__": name}
            shadow = self._shadows[cls] = type.__new__(type(cls), name, (cls,), namespace)
        return shadow


def _real_class(cls: type[BaseModel]) -> Callable[[Any], Any]:
    """The after-validator giving an object read as ``cls``'s private subclass its class ``cls``."""
    set_class = object.__setattr__

    def real_class(value: Any) -> Any:
        set_class(value, "__class__", cls)
        return value

    return real_class


def _probe_events() -> list[Event]:
    """Events of every kind the store keeps, to hold the stripped schema to ADK's reading of them."""
    return [
        Event(
            invocation_id="probe",
            author="agent",
            content=types.Content(
                role="model",
                parts=[
                    types.Part(text="text"),
                    types.Part.from_bytes(data=b"\x00\xff bytes", mime_type="image/png"),
                    types.Part(function_call=types.FunctionCall(id="c", name="f", args={"a": [1, {"b": 2.5}]})),
                    types.Part(function_response=types.FunctionResponse(id="c", name="f", response={"r": "ok"})),
                ],
            ),
            actions=EventActions(state_delta={"k": "v"}, artifact_delta={"f": 1}, transfer_to_agent="a", escalate=True),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=10, candidates_token_count=2, cached_content_token_count=1
            ),
            custom_metadata={"m": {"n": [1, 2]}},
            long_running_tool_ids={"c"},
            partial=False,
            timestamp=1_700_000_000.25,
        ),
        Event(author="user", content=types.Content(role="user", parts=[types.Part(text="hi")])),
        Event(author="agent"),
    ]
