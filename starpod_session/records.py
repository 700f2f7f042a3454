"""Frozen value records returned to callers (no ORM object ever leaves a transaction).

Among them the outcomes of resolving a key: ``Continue(id)`` / ``New(closed_session_id)``
(both :class:`SessionDecision`), and :class:`OpenedSession`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, ClassVar, Protocol

import attrs

from ._common.validation import MAX_COST_USD, MAX_COUNT, check_count, check_optional_short_text
from .errors import InvalidInput

__all__ = [
    "MAX_COST_USD",
    "MAX_COUNT",
    "Continue",
    "CostOverview",
    "DailyModelCost",
    "Erasure",
    "ModelCostSummary",
    "New",
    "OpenedSession",
    "ProgressCallback",
    "SearchHit",
    "SessionDecision",
    "SessionMessage",
    "SessionMeta",
    "ToolUsageSummary",
    "TransferProgress",
    "UsageRecord",
    "UsageSummary",
    "UserCostSummary",
]


@attrs.frozen
class SessionMeta:
    """Metadata of one session, as stored in ``session_metadata``."""

    id: str
    created_at: datetime
    last_message_at: datetime
    is_closed: bool
    summary: str | None
    title: str | None
    message_count: int
    channel: str
    channel_session_key: str | None
    user_id: str
    is_read: bool
    triggered_by: str | None = None
    #: Hidden from :meth:`~starpod_session.SessionManager.list_sessions` unless asked for.
    is_archived: bool = False


@attrs.frozen
class SessionMessage:
    """One stored message of a session's transcript."""

    id: int
    session_id: str
    role: str
    content: str
    timestamp: datetime


def _validated(
    check: Callable[[str, Any], object], field: str
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    """An attrs validator running ``check`` on the field's value."""

    def validator(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
        check(field, value)

    return validator


def _check_cost(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(field, f"expected a float, got {type(value).__name__}")
    # One comparison refuses NaN, infinities, negatives and ints too large for a
    # float alike (Python compares an int with a float exactly, without converting).
    if not 0 <= value <= MAX_COST_USD:
        raise InvalidInput(field, f"{value!r} is not an amount in 0..{MAX_COST_USD:.0e}")


@attrs.frozen
class UsageRecord:
    """Token usage and cost of one agent turn; validated when constructed.

    Counts must be ints in 0..2**63-1, ``cost_usd`` a number in 0..1e15
    (:data:`MAX_COST_USD`, so that no sum of costs can overflow); anything else
    raises :class:`~starpod_session.InvalidInput` naming the field.
    A ``model`` of ``None`` is reported as ``"unknown"`` by :meth:`cost_overview`; a
    ``user_id`` of ``None`` (the default) is the session's user, filled in by
    :meth:`~starpod_session.SessionManager.record_usage`.
    """

    input_tokens: int = attrs.field(default=0, validator=_validated(check_count, "input_tokens"))
    output_tokens: int = attrs.field(default=0, validator=_validated(check_count, "output_tokens"))
    cache_read: int = attrs.field(default=0, validator=_validated(check_count, "cache_read"))
    cache_write: int = attrs.field(default=0, validator=_validated(check_count, "cache_write"))
    cost_usd: float = attrs.field(default=0.0, validator=_validated(_check_cost, "cost_usd"))
    model: str | None = attrs.field(default=None, validator=_validated(check_optional_short_text, "model"))
    user_id: str | None = attrs.field(default=None, validator=_validated(check_optional_short_text, "user_id"))


class _TokenTotals(Protocol):
    """The totals a prompt-token count is the sum of."""

    @property
    def total_input_tokens(self) -> int: ...

    @property
    def total_cache_read(self) -> int: ...

    @property
    def total_cache_write(self) -> int: ...


def _prompt_tokens(totals: _TokenTotals) -> int:
    return totals.total_input_tokens + totals.total_cache_read + totals.total_cache_write


def _prompt_tokens_field() -> int:
    """``total_prompt_tokens``: derived from the other totals, never passed, carried by ``attrs.asdict``."""
    return attrs.field(init=False, default=attrs.Factory(_prompt_tokens, takes_self=True))


@attrs.frozen
class UsageSummary:
    """Totals over one session's usage rows (all zero when it has none).

    ``total_input_tokens`` counts ``input_tokens`` only; cache reads and writes are
    reported apart. ``total_prompt_tokens`` is the three together (what the Rust
    crate now calls ``total_input_tokens``). ``total_turns`` is the number of usage rows.
    """

    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cache_read: int = 0
    total_cache_write: int = 0
    total_cost_usd: float = 0.0
    total_turns: int = 0
    total_prompt_tokens: int = _prompt_tokens_field()


@attrs.frozen
class UserCostSummary:
    """Usage totals of one user (cache reads and writes apart from ``total_input_tokens``)."""

    user_id: str
    total_cost_usd: float
    total_input_tokens: int
    total_output_tokens: int
    total_turns: int
    total_cache_read: int = 0
    total_cache_write: int = 0
    total_prompt_tokens: int = _prompt_tokens_field()


@attrs.frozen
class ModelCostSummary:
    """Usage totals of one model (``"unknown"`` for rows recorded without one)."""

    model: str
    total_cost_usd: float
    total_input_tokens: int
    total_output_tokens: int
    total_turns: int
    total_cache_read: int = 0
    total_cache_write: int = 0
    total_prompt_tokens: int = _prompt_tokens_field()


@attrs.frozen
class DailyModelCost(ModelCostSummary):
    """Usage totals of one model on one UTC calendar day (``day``, a keyword-only ``date``)."""

    day: date = attrs.field(kw_only=True)


@attrs.frozen
class ToolUsageSummary:
    """How often one tool was called, and how many of those calls reported an error."""

    tool_name: str
    invocations: int
    errors: int


@attrs.frozen
class CostOverview:
    """Usage totals over all sessions, with breakdowns ordered by cost (descending), then name.

    ``by_day`` holds one entry per (UTC day, model), ordered by day, then cost
    descending, then model name. ``by_tool`` counts the tool calls saved as
    messages in the period, ordered by invocations descending, then tool name.
    ``total_prompt_tokens`` is input plus cache read plus cache write tokens.
    """

    total_cost_usd: float
    total_input_tokens: int
    total_output_tokens: int
    total_turns: int
    by_user: tuple[UserCostSummary, ...]
    by_model: tuple[ModelCostSummary, ...]
    total_cache_read: int = 0
    total_cache_write: int = 0
    by_day: tuple[DailyModelCost, ...] = ()
    by_tool: tuple[ToolUsageSummary, ...] = ()
    total_prompt_tokens: int = _prompt_tokens_field()


@attrs.frozen
class SearchHit:
    """One message found by :meth:`SessionManager.search_messages`.

    ``snippet`` is a short excerpt of the content around its first match, each
    matched term marked ``«like this»``. ``score`` is the engine's relevance (higher
    is better; comparable within one result list only). ``cursor`` is opaque: pass
    the last hit's as ``cursor=`` to get the next page.
    """

    message_id: int
    session_id: str
    role: str
    timestamp: datetime
    session_title: str | None
    channel: str
    user_id: str
    snippet: str
    score: float
    cursor: str


@attrs.frozen
class Erasure:
    """What :meth:`delete_session`, :meth:`forget_user` or :meth:`prune` removed (or would remove).

    ``usage_rows`` counts usage rows deleted (``keep_usage=False``) or, for
    ``forget_user``, given the ``pseudonym`` in place of the user id.
    """

    sessions: int = 0
    messages: int = 0
    compactions: int = 0
    usage_rows: int = 0
    transcripts: int = 0
    pseudonym: str | None = None


@attrs.frozen
class SessionDecision:
    """Base of the two decisions; match on :class:`Continue` and :class:`New`.

    ``SessionDecision.Continue`` and ``SessionDecision.New`` name the same classes,
    for code that reads like the Rust crate's ``SessionDecision::Continue``.
    """

    Continue: ClassVar[type[Continue]]
    New: ClassVar[type[New]]


@attrs.frozen
class Continue(SessionDecision):
    """Keep using the open session ``session_id``."""

    session_id: str


@attrs.frozen
class New(SessionDecision):
    """Start a new session; ``closed_session_id`` is the stale session this call auto-closed, if any."""

    closed_session_id: str | None = None


@attrs.frozen
class OpenedSession:
    """The outcome of :meth:`SessionManager.open_session`.

    ``session_id`` is the key's open session; ``created`` says whether this call
    created it; ``closed_session_id`` is the stale session this call auto-closed
    (reported to exactly one caller), if any.
    """

    session_id: str
    closed_session_id: str | None
    created: bool


SessionDecision.Continue = Continue
SessionDecision.New = New


@attrs.frozen
class TransferProgress:
    """How far a long call got: ``done`` of ``total`` rows of ``table`` in ``step``.

    ``step`` is ``"copy"``, ``"dump"``, ``"restore"``, ``"read"`` (checking a dump
    before restoring it: ``table`` is ``None``, ``done``/``total`` are bytes),
    ``"verify"`` (``table`` is ``None``), ``"upgrade"`` (``table`` is ``None``:
    ``done`` of ``total`` migrations applied) or ``"upgrade REV"`` (migration REV
    filling ``table`` from the rows already stored: ``done`` of ``total`` of them read).
    """

    step: str
    table: str | None
    done: int
    total: int


#: What a long call (a transfer, a schema upgrade) calls after each batch.
ProgressCallback = Callable[[TransferProgress], None]
