"""ADK ``Event`` objects again from the JSON the ADK store wrote (the ``adk`` extra).

``Event.model_validate_json`` of an event spends more than half its time in three
Python hooks of ADK's and google-genai's models, each a no-op for JSON that ADK
itself dumped (the store keeps ``event.model_dump_json(exclude_none=True)``):

* google-genai's ``_check_field_type_mismatches``, on every genai model, only
  warns when a field holds a model *instance* of the wrong class; JSON holds no
  instances;
* ``Event._accept_convenience_kwargs`` moves the top-level keys ``message``,
  ``state``, ``route`` and ``node_path`` into fields; a dump holds none of them;
* ``Part.__init__`` (pydantic-core calls a model's own ``__init__`` with the
  JSON object's keys) takes a positional value, drops the keywords it names
  (``text``, ``inline_data``, ...) whose value is ``None``, and validates the
  rest again, in Python mode; JSON passes keywords only, a dump sets none of
  those to ``None``, and the schema's one JSON-mode pass reads bytes (base64)
  and enums as that second pass does.

:func:`events_from_json` validates with ADK's own schema (pydantic's types,
defaults, aliases, enums, bytes and every other validator) minus those hooks:
the same objects (equal, of the same classes, with the same fields set), in
about half the time. pydantic-core reuses a model class's own finished
validator wherever that class appears in a schema, hooks and all, so the schema
names a private subclass of each model class instead (one with no validator of
its own and the same layout) and an after-validator gives each object its real
class back. The subclasses are never handed out, but they are subclasses: they
show in ``Part.__subclasses__()`` and the like.

It stays on ``Event.model_validate_json`` for a text that a hook could change
(one with a convenience key, or one of ``Part.__init__``'s keywords set to
``null``; a ``null`` elsewhere, as in a tool's response, changes nothing), for
one the stripped schema refuses, and for the life of the process if the
stripped schema cannot be built under the installed ADK and pydantic or reads
its probe events (every kind the store keeps) otherwise than ADK does.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import _common as genai_common
from google.genai import types
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator

__all__ = ["events_from_json"]

_validate_json = Event.model_validate_json


@attrs.frozen
class _Reader:
    """The stripped schema's ``validate_json``, and what finds a text it must leave to ADK's validator."""

    validate: Callable[[str], Event]
    hooked: Callable[[str], object]


def events_from_json(texts: Iterable[str]) -> list[Event]:
    """The ``Event`` of each JSON text the ADK store wrote, in order; equal to ``Event.model_validate_json``'s."""
    reader = _reader()
    if reader is None:
        return [_validate_json(text) for text in texts]
    fast, hooked = reader.validate, reader.hooked
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
def _reader() -> _Reader | None:
    """The stripped schema's reader, or ``None`` (kept for the life of the process) where it cannot be had or
    reads a probe event otherwise than ``Event.model_validate_json``. Two threads reading first may both build
    it: the same reader, one kept."""
    try:
        schema = _Stripper().schema(Event.__pydantic_core_schema__)
        validate: Callable[[str], Event] = SchemaValidator(schema).validate_json
        for probe in _probe_events():
            text = probe.model_dump_json(exclude_none=True)
            got, expected = validate(text), _validate_json(text)
            # pydantic's == compares the classes too (an object left with its private class is unequal), and
            # exclude_unset the fields set.
            if got != expected or any(
                got.model_dump_json(exclude_unset=unset) != expected.model_dump_json(exclude_unset=unset)
                for unset in (False, True)
            ):
                return None
        return _Reader(validate, _hooked_text().search)
    except Exception:  # any surprise of another ADK or pydantic: ADK's own validator, which is always right
        return None


def _hooked_text() -> re.Pattern[str]:
    """What finds a text a hook could change: a top-level convenience key of ``Event._accept_convenience_kwargs``
    (found anywhere, to be safe) or a keyword ``Part.__init__`` drops when it is ``null``."""
    dropped = [
        name
        for name, parameter in inspect.signature(types.Part.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    convenience = ("message", "state", "route", "node_path")
    return re.compile(
        rf'"(?:{"|".join(map(re.escape, convenience))})"\s*:|"(?:{"|".join(map(re.escape, dropped))})"\s*:\s*null\b'
    )


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
    """One event of each kind the store keeps (each kind of part, action, metadata and enum at least once), to
    hold the stripped schema to ADK's reading; the tests read them too."""
    part = types.Part
    return [
        Event(author="user", invocation_id="i", content=types.Content(role="user", parts=[part(text="hello")])),
        Event(
            author="agent",
            invocation_id="i",
            branch="root.agent",
            content=types.Content(
                role="model",
                parts=[
                    part(text="thinking", thought=True, thought_signature=b"\x00sig\xff"),
                    part.from_bytes(data=bytes(range(256)), mime_type="image/png"),
                    part(file_data=types.FileData(file_uri="gs://b/f.pdf", mime_type="application/pdf")),
                    part(function_call=types.FunctionCall(id="c1", name="forecast", args={"city": "Oslo", "n": [1]})),
                    part(executable_code=types.ExecutableCode(code="print(1)", language=types.Language.PYTHON)),
                    part(code_execution_result=types.CodeExecutionResult(outcome=types.Outcome.OUTCOME_OK, output="1")),
                ],
            ),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=1000,
                candidates_token_count=50,
                cached_content_token_count=200,
                prompt_tokens_details=[types.ModalityTokenCount(modality=types.MediaModality.TEXT, token_count=9)],
            ),
            model_version="gemini-2.5-flash",
            long_running_tool_ids={"c1", "c2"},
            custom_metadata={"trace": {"id": [1, 2.5, "x"], "none": None}},
            timestamp=1_700_000_000.123456,
        ),
        Event(
            author="tool",
            invocation_id="i",
            content=types.Content(
                role="user",
                parts=[
                    part(
                        function_response=types.FunctionResponse(
                            id="c1", name="forecast", response={"t": -3, "error": None}
                        )
                    )
                ],
            ),
            actions=EventActions(
                state_delta={"k": "v", "app:shared": 1, "user:n": [1, 2], "gone": None},
                artifact_delta={"report.pdf": 2},
                transfer_to_agent="other",
                escalate=True,
                skip_summarization=True,
            ),
        ),
        Event(
            author="agent",
            invocation_id="i",
            error_code="SAFETY",
            error_message="blocked",
            interrupted=True,
            turn_complete=True,
            grounding_metadata=types.GroundingMetadata(web_search_queries=["oslo weather"]),
        ),
        Event(author="agent", content=types.Content(role="model", parts=[part(text="Tromsø ☃ \u2028")])),
        Event(author="agent"),
    ]
