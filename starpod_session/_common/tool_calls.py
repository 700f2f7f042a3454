"""What a ``tool_use`` or ``tool_result`` message says, for the tool statistics.

The Rust crate stores each tool call as one message whose content is a single
JSON object, and reads it with SQLite's ``json_extract`` at report time:
``$.name`` and ``$.id`` of a ``tool_use``, ``$.tool_use_id`` and ``$.is_error``
of a ``tool_result`` (an error when ``is_error = 1``, i.e. JSON ``true`` or
``1``). This module reads the same fields once, when the message is saved.
Content that is not a JSON object, or lacks a field, never raises: the use
counts under ``"unknown"`` and takes part in no match.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

__all__ = [
    "TOOL_RESULT",
    "TOOL_USE",
    "UNKNOWN_TOOL",
    "ToolResult",
    "ToolUse",
    "may_answer_a_call",
    "read_tool_result",
    "read_tool_use",
]

TOOL_USE = "tool_use"
TOOL_RESULT = "tool_result"
#: The name a tool call is counted under when its message names no tool.
UNKNOWN_TOOL = "unknown"
#: Names and ids are stored in a 255-character column on every backend.
_MAX_CHARS = 255


@attrs.frozen
class ToolUse:
    """A ``tool_use`` message: the tool's name and the call's id (None when absent)."""

    tool_name: str
    call_id: str | None


@attrs.frozen
class ToolResult:
    """A ``tool_result`` message: the id of the call it answers (None when absent), and whether it failed."""

    call_id: str | None
    is_error: bool


def read_tool_use(content: str) -> ToolUse:
    """The name and id of a ``tool_use`` message's JSON object; ``"unknown"``/None where missing."""
    fields = _object(content)
    name = _storable(fields.get("name"))
    if name is not None and len(name) > _MAX_CHARS:
        name = name[:_MAX_CHARS]
    return ToolUse(tool_name=UNKNOWN_TOOL if name is None else name, call_id=_call_id(fields.get("id")))


def read_tool_result(content: str) -> ToolResult:
    """The ``tool_use_id`` and ``is_error`` of a ``tool_result`` message's JSON object."""
    fields = _object(content)
    flag = fields.get("is_error")
    # json_extract(...) = 1 holds for true, 1 and 1.0; not for "true" or false.
    is_error = flag is True or (type(flag) in (int, float) and flag == 1)
    return ToolResult(call_id=_call_id(fields.get("tool_use_id")), is_error=is_error)


def may_answer_a_call(content: str) -> bool:
    """False when ``content`` cannot hold a ``tool_use_id`` key, so :func:`read_tool_result` would find no call id.

    Without the plain key or a ``\\u`` escape (the only escape that can spell one
    of its letters) no JSON object in it has that key: no need to parse it.
    """
    return "tool_use_id" in content or "\\u" in content


def _object(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return {}
    return value if isinstance(value, dict) else {}


def _call_id(value: object) -> str | None:
    call_id = _storable(value)
    return call_id if call_id is not None and len(call_id) <= _MAX_CHARS else None


def _storable(value: object) -> str | None:
    """``value`` if it is a string every backend can store (no NUL, no lone surrogate), else None."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value
