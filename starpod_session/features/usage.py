"""Usage and reports: token usage and cost per turn, compactions, the cost overview."""

from __future__ import annotations

from datetime import datetime

import attrs

from .._clock import utc_now
from .._common.timestamps import coerce_instant
from .._common.validation import check_count, check_optional_short_text, check_session_id, check_short_text, check_text
from .._driver.runner import StatementRunner
from ..errors import InvalidInput, SessionNotFound
from ..records import CostOverview, UsageRecord, UsageSummary
from ..storage.repositories import CompactionRepository, SessionRepository, ToolCallRepository, UsageRepository
from .base import ManagerState
from .messages import generated_key
from .sessions import require_session


def record_usage(
    self: ManagerState, session_id: str, usage_record: UsageRecord, turn: int, *, usage_key: str | None = None
) -> None:
    """Store the token usage and cost of one turn of the session.

    A record without ``user_id`` is attributed to the session's user.

    ``usage_key`` (up to 255 characters, unique per session) makes the call
    idempotent: when the session already has a row under that key, nothing is
    written. Without one, the call stores a key of its own, so the library's
    retries never double the row.
    """
    session_id = check_session_id(session_id)
    if not isinstance(usage_record, UsageRecord):
        raise InvalidInput("usage_record", f"expected a UsageRecord, got {type(usage_record).__name__}")
    turn = check_count("turn", turn)
    key = check_optional_short_text("usage_key", usage_key)
    if key is None:
        key = generated_key()  # one for every attempt of this call

    def work(connection: StatementRunner) -> None:
        owner = SessionRepository(connection).owner(session_id)
        if owner is None:
            raise SessionNotFound(session_id)
        record = usage_record if usage_record.user_id is not None else attrs.evolve(usage_record, user_id=owner)
        UsageRepository(connection).append(session_id, turn, record, utc_now(), key)

    self._transactions.write_prepared(work)


def session_usage(self: ManagerState, session_id: str) -> UsageSummary:
    """Totals over the session's usage rows (zeros for none or an unknown id)."""
    session_id = check_session_id(session_id)
    return self._transactions.read(lambda connection: UsageRepository(connection).session_summary(session_id))


def cost_overview(
    self: ManagerState, since: str | datetime | None = None, until: str | datetime | None = None
) -> CostOverview:
    """Totals over every usage row with ``since <= timestamp < until`` (a ``None`` bound is open).

    ``since`` and ``until`` are aware datetimes or RFC 3339 strings (``Z`` or
    any offset); ``until`` must not be before ``since``. ``by_user`` and
    ``by_model`` are ordered by cost descending, then name; rows without a
    model count as ``"unknown"``. ``by_day`` has one entry per UTC day and
    model, ordered by day, then cost descending, then model. ``by_tool`` counts the
    ``tool_use`` messages saved in the period per tool, with those whose
    ``tool_result`` reported an error, most called first, then by name.
    """
    start = None if since is None else coerce_instant(since, "since")
    end = None if until is None else coerce_instant(until, "until")
    if start is not None and end is not None and end < start:
        raise InvalidInput("until", f"{end.isoformat()} is before since ({start.isoformat()})")

    def work(connection: StatementRunner) -> CostOverview:
        overview = UsageRepository(connection).overview(start, end)
        return attrs.evolve(overview, by_tool=ToolCallRepository(connection).usage(start, end))

    return self._lagging_reads.read_prepared(work, snapshot=True)  # may lag: on a read replica when there is one


def record_compaction(
    self: ManagerState,
    session_id: str,
    trigger: str,
    pre_tokens: int,
    summary: str,
    messages_compacted: int,
) -> None:
    """Log one context compaction of the session."""
    session_id = check_session_id(session_id)
    trigger = check_short_text("trigger", trigger)
    pre_tokens = check_count("pre_tokens", pre_tokens)
    summary = check_text("summary", summary)
    messages_compacted = check_count("messages_compacted", messages_compacted)

    def work(connection: StatementRunner) -> None:
        require_session(SessionRepository(connection), session_id)
        CompactionRepository(connection).append(
            session_id,
            trigger=trigger,
            pre_tokens=pre_tokens,
            summary=summary,
            messages_compacted=messages_compacted,
            now=utc_now(),
        )

    self._transactions.write_prepared(work)
