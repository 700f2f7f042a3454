"""The OpenAI Agents SDK's ``Session``, kept in starpod_session: ``StarpodSession(session_id, manager)``.

Needs the ``openai-agents`` extra (``pip install 'starpod-session[openai-agents]'``);
importing :mod:`starpod_session` never imports the SDK, importing this module
does (and names the extra when it is missing).

How items are stored (docs/guides/openai-agents.md):

- An SDK session id is the ``key`` of an open session of channel ``main`` (user
  ``admin`` unless ``user_id=`` says otherwise): one id on one database is one
  shared history, listed, searched and exported like any session. An id that
  is not a key the facade takes (empty, longer than 255 characters, holding
  NUL or a lone surrogate) is keyed ``sha256:`` and the hex SHA-256 of its UTF-8
  (as is an id that itself starts with ``sha256:``).
- Each item is one message. Its role is the item's ``role`` (``user``,
  ``assistant``, ``system``, ``developer``); ``tool_use`` for a function or
  custom tool call and ``tool_result`` for its output (so the tool statistics
  count SDK tools by name); otherwise the item's ``type`` (``reasoning``, ...).
- A plain message, an item that is exactly ``{"role": ..., "content": "text"}``,
  is stored as its text (unless the text starts with ``{`` or a line break and
  ``{``); every other item as its JSON object, compact and in UTF-8. An item
  holding an integer beyond 64 bits (which orjson would read as a float) is
  stored with a line break before its ``{``, and read with the standard
  ``json`` module. A message whose content starts with ``{`` (or a line break
  and ``{``) is read back as the JSON it holds, any other as a plain message:
  so items come back equal to the dicts the SDK gave, whichever decoder reads
  them, and a message another writer saved in the session comes back as a
  plain message.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._common.validation import check_short_text
from ..async_manager import AsyncSessionManager
from ..channels import Channel
from ..errors import InvalidInput, SessionNotFound
from ..manager import SessionManager
from ..prices import ModelPrice, PriceTable, as_price_table
from ..records import SessionMessage

try:
    from agents.memory.session import SessionABC
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        "starpod_session.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'starpod-session[openai-agents]'"
    ) from error

_fast_loads: Callable[[str], Any]
#: orjson's encoder, used only to check an item (it refuses lone surrogates and integers beyond
#: 64 bits, which :func:`_dumps` must find); ``None`` without orjson.
_fast_checks: Callable[[Any], Any] | None
try:  # the fast decoder of the extra; the standard module gives the same values
    import orjson

    _fast_loads = orjson.loads
    _fast_checks = orjson.dumps
except ImportError:  # pragma: no cover - orjson is part of the extra
    _fast_loads = json.loads
    _fast_checks = None
#: ``json.dumps(item, ensure_ascii=False, separators=(",", ":"))``, without making an encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.result import RunResultBase

__all__ = ["StarpodSession"]

T = TypeVar("T")


#: The prefix of a key made from a session id the facade cannot take as a key.
HASHED_KEY_PREFIX = "sha256:"
#: Item types stored as ``tool_use`` / ``tool_result`` messages (what the tool statistics read).
TOOL_CALL_TYPES = frozenset({"function_call", "custom_tool_call"})
TOOL_OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
#: What a stored item the fast decoder would misread starts with (before its ``{``).
_STANDARD_JSON = "\n"
#: The integers orjson reads as integers; it reads wider ones as floats.
_NARROWEST, _WIDEST = -(2**63), 2**64 - 1
#: The role of an item with neither a role nor a type.
UNNAMED_ROLE = "item"


class StarpodSession(SessionABC):
    """An OpenAI Agents SDK session whose items are messages of a starpod_session session.

    ``StarpodSession(session_id, manager)`` behaves as the SDK's ``SQLiteSession``
    does (order, limits, ``pop_item`` on an empty session, items coming back equal
    to what was added), over a :class:`~starpod_session.SessionManager` or an
    :class:`~starpod_session.AsyncSessionManager`: pass the latter in a server,
    where no call may block the event loop; over a ``SessionManager`` each call
    runs in the awaiting thread (a SQLite call takes a fraction of a millisecond,
    but a lock wait blocks the loop for as long as it lasts).

    ``session_settings`` is a ``SessionSettings`` or a dict of its fields (an
    unknown key is a ``TypeError``, as in the SDK); its ``limit`` is what
    :meth:`get_items` returns when called without one. ``prices`` (a
    :class:`~starpod_session.PriceTable` or a mapping of model names to prices)
    is what :meth:`store_run_usage` costs usage with. ``user_id`` owns the
    session (and its usage) in starpod_session.

    The starpod session is found on first use (created by the first write) and
    kept by this object; :attr:`starpod_session_id` says which it is. Subclass
    it freely; it keeps no state tied to an event loop or a thread.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        manager: SessionManager | AsyncSessionManager,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
        prices: PriceTable | Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
        user_id: str = "admin",
    ) -> None:
        if not isinstance(session_id, str):
            raise TypeError(f"session_id must be a str, got {type(session_id).__name__}")
        if not isinstance(manager, (SessionManager, AsyncSessionManager)):
            raise TypeError(f"manager must be a SessionManager or an AsyncSessionManager, got {type(manager).__name__}")
        self.session_id = session_id
        self.session_settings = _settings(session_settings)
        #: The manager the items are kept in.
        self.manager = manager
        self.prices = as_price_table(prices)
        self.user_id = check_short_text("user_id", user_id)
        #: The key of the session's starpod session (channel ``main``).
        self.key = session_key(session_id)
        self._starpod_id: str | None = None

    @property
    def starpod_session_id(self) -> str | None:
        """The id of the starpod session holding the items, once this object has found or created it."""
        return self._starpod_id

    # -- the SDK's Session -----------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first; with ``limit`` (or the settings' limit) the newest ``limit`` of them.

        ``limit=0`` gives ``[]``, a negative limit every item (as ``SQLiteSession``).
        """
        session_limit = resolve_session_limit(limit, self.session_settings)
        if session_limit == 0:
            return []
        count = session_limit if session_limit is not None and session_limit > 0 else None

        def read(sync: SessionManager) -> list[TResponseInputItem]:
            starpod_id = self._starpod_id or self._find(sync)
            # Decoded where they were read: on an AsyncSessionManager's thread, so a long
            # history's decoding never holds up the event loop (and its rows stay in that
            # core's caches).
            return [] if starpod_id is None else _items(sync.get_message_contents(starpod_id, count))

        return await self._call(read)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items, in order, in one transaction (all or none are stored)."""
        if not items:
            return
        messages = [_message(item) for item in items]
        await self._call(lambda sync: self._write(sync, lambda starpod_id: sync.save_messages(starpod_id, messages)))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; ``None`` when the session has none."""

        def pop(sync: SessionManager) -> SessionMessage | None:
            starpod_id = self._starpod_id or self._find(sync)
            return None if starpod_id is None else sync.pop_message(starpod_id)

        message = await self._call(pop)
        return None if message is None else _item(message.role, message.content)

    async def clear_session(self) -> None:
        """Delete every item; the starpod session itself, its usage and title stay."""

        def clear(sync: SessionManager) -> None:
            starpod_id = self._starpod_id or self._find(sync)
            if starpod_id is not None:
                sync.clear_messages(starpod_id)

        await self._call(clear)

    # -- usage -----------------------------------------------------------------

    async def store_run_usage(self, result: RunResultBase, *, model: str | None = None) -> int:
        """Record the usage of each model request of a finished run; returns how many responses the run had.

        One usage row per model response of ``result`` (``result.raw_responses``),
        turn 1, 2, ... in order: ``output_tokens``; the SDK's cached input tokens
        as ``cache_read`` and its cache writes as ``cache_write``; as
        ``input_tokens`` the SDK's input count less both (ours counts neither,
        the SDK's counts them in). The model is ``model`` if given, else the run's
        last agent's model name (``None`` when the agent names none). The cost
        comes from ``prices`` (0 for a model the table does not name). A response
        with an id is stored under it as its usage key, so storing a run twice
        stores it once.
        """
        model_name = model if model is not None else _model_name(result)
        rows = []
        for response in result.raw_responses:
            usage = response.usage
            details = usage.input_tokens_details
            cached = int(getattr(details, "cached_tokens", 0) or 0)
            written = int(getattr(details, "cache_write_tokens", 0) or 0)
            record = self.prices.usage_record(
                model_name,
                input_tokens=max(int(usage.input_tokens) - cached - written, 0),
                output_tokens=int(usage.output_tokens),
                cache_read=cached,
                cache_write=written,
            )
            key = None if response.response_id is None else f"openai-agents:{response.response_id}"
            rows.append((record, key))

        def store(sync: SessionManager) -> None:
            for turn, (record, key) in enumerate(rows, start=1):
                self._write(sync, functools.partial(sync.record_usage, usage_record=record, turn=turn, usage_key=key))

        await self._call(store)
        return len(rows)

    # -- the starpod session ------------------------------------------------------

    async def _call(self, work: Callable[[SessionManager], T]) -> T:
        """Run ``work(sync manager)``: on an ``AsyncSessionManager``'s threads, awaited to its end even if the
        awaiting task is cancelled meanwhile (as the SDK's sessions do), or right here on a ``SessionManager``
        (where nothing can interrupt it)."""
        if isinstance(self.manager, AsyncSessionManager):
            return await self.manager.run_to_completion(work)
        return work(self.manager)

    def _find(self, sync: SessionManager) -> str | None:
        """The key's open session, if there is one (a read: a reader creates nothing)."""
        found = sync.find_open_session(Channel.MAIN, self.key, user_id=self.user_id)
        if found is not None:
            self._starpod_id = found
        return found

    def _write(self, sync: SessionManager, write: Callable[[str], T]) -> T:
        """``write(starpod session id)``, the session opened first if need be (and afresh, once, if it was
        deleted since this object found it)."""
        starpod_id = self._starpod_id or self._open(sync)
        try:
            return write(starpod_id)
        except SessionNotFound:
            self._starpod_id = None
            return write(self._open(sync))

    def _open(self, sync: SessionManager) -> str:
        """The key's open session, created if there is none."""
        starpod_id = sync.open_session(Channel.MAIN, self.key, user_id=self.user_id).session_id
        self._starpod_id = starpod_id
        return starpod_id


def session_key(session_id: str) -> str:
    """The ``main``-channel key of an SDK session id (see the module's docstring)."""
    if not session_id.startswith(HASHED_KEY_PREFIX):
        try:
            return check_short_text("key", session_id)
        except InvalidInput:
            pass
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()
    return HASHED_KEY_PREFIX + digest


def _settings(settings: SessionSettings | Mapping[str, Any] | None) -> SessionSettings:
    """The SDK's own normalisation: a dict's unknown key is a ``TypeError``."""
    if settings is None:
        return SessionSettings()
    if isinstance(settings, SessionSettings):
        return settings
    if not isinstance(settings, Mapping):
        raise TypeError(f"session_settings must be a SessionSettings or a dict, got {type(settings).__name__}")
    return SessionSettings().resolve(dict(settings))


def _message(item: Any) -> tuple[str, str]:
    """The ``(role, content)`` message an item is stored as."""
    if type(item) is not dict and not isinstance(item, Mapping):  # a dict's test first: the ABC's costs more
        raise TypeError(f"a session item is a dict, got {type(item).__name__}")
    role = item.get("role")
    content = item.get("content")
    if (
        isinstance(role, str)
        and isinstance(content, str)
        and len(item) == 2
        and not content.startswith(("{", _STANDARD_JSON + "{"))
        and _storable_role(role)
    ):
        return role, content  # a plain message: its text, as people read it
    return _role(item, role), _dumps(item)


def _role(item: Mapping[str, Any], role: object) -> str:
    kind = item.get("type")
    if kind in TOOL_CALL_TYPES:
        return "tool_use"
    if kind in TOOL_OUTPUT_TYPES:
        return "tool_result"
    for name in (role, kind):
        if isinstance(name, str) and _storable_role(name):
            return name
    return UNNAMED_ROLE


def _storable_role(role: str) -> bool:
    try:
        check_short_text("role", role)
    except InvalidInput:
        return False
    return True


def _dumps(item: Mapping[str, Any]) -> str:
    """The item's JSON: UTF-8 as it is (searchable), escaped only where a lone surrogate must be;
    after a line break when it holds an integer the fast decoder would misread."""
    text = _ENCODER.encode(item)
    if _fast_checks is not None:
        try:
            # What orjson writes holds no lone surrogate and no integer beyond 64 bits; it
            # refuses anything else (and what it cannot write): then the checks below decide.
            _fast_checks(item)
            return text
        except TypeError:
            pass
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(item, separators=(",", ":"))
    return _STANDARD_JSON + text if _has_wide_integer(item) else text


def _has_wide_integer(value: object) -> bool:
    """Whether ``value`` holds an ``int`` outside the 64-bit ranges (which orjson decodes as a float)."""
    if isinstance(value, int):  # an int subclass (an IntEnum) too: the decoders read its digits as an int
        return not _NARROWEST <= value <= _WIDEST
    if isinstance(value, Mapping):
        return any(_has_wide_integer(inner) for inner in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_wide_integer(inner) for inner in value)
    return False


def _items(contents: list[tuple[str, str]]) -> list[TResponseInputItem]:
    """The items the messages hold: :func:`_item` of each, inlined for the common case (a long history's read)."""
    loads = _fast_loads
    try:
        items: list[Any] = [
            loads(content)
            if content[:1] == "{"
            else ({"role": role, "content": content} if content[:2] != "\n{" else _item(role, content))
            for role, content in contents
        ]
        return items
    except ValueError:  # a message the fast decoder refuses: each one the careful way
        return [_item(role, content) for role, content in contents]


def _item(role: str, content: str) -> TResponseInputItem:
    """The item a message holds (see the module's docstring)."""
    if content[:2] == "\n{":
        try:
            return cast("TResponseInputItem", json.loads(content))
        except ValueError:
            pass  # not JSON after all: another writer's text
    elif content[:1] == "{":
        try:
            return cast("TResponseInputItem", _fast_loads(content))
        except ValueError:  # orjson refuses what json takes (NaN, infinities, lone surrogates)
            try:
                return cast("TResponseInputItem", json.loads(content))
            except ValueError:
                pass  # not JSON after all: another writer's text
    return cast("TResponseInputItem", {"role": role, "content": content})


def _model_name(result: Any) -> str | None:
    model = getattr(getattr(result, "last_agent", None), "model", None)
    if isinstance(model, str):
        return model
    name = getattr(model, "model", None)
    return name if isinstance(name, str) else None
