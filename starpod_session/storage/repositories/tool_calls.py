"""SQL of the ``tool_calls`` table: what the tool statistics need, written with each tool message."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic

from sqlalchemy import Select, and_, bindparam, case, exists, func, select, true, update
from sqlalchemy.engine import Dialect

from ..._common.tool_calls import TOOL_RESULT, TOOL_USE, ToolResult, ToolUse
from ..._driver.runner import Runner
from ..._driver.statements import Prepared, PreparedShapes
from ...backends import insert_unless_duplicate
from ...records import ToolUsageSummary
from ..models import ToolCallRow

__all__ = ["ToolCallRepository"]

_t = ToolCallRow.__table__

_same_call = and_(_t.c.session_id == bindparam("session_id"), _t.c.call_id == bindparam("call_id"))
# A message's row is stored once: two calls racing with the same message key both
# reach here with the one stored message, and the second stores nothing.
_INSERT = Prepared(
    insert_unless_duplicate(
        _t,
        {
            name: bindparam(name)
            for name in (
                "message_id",
                "session_id",
                "role",
                "call_id",
                "tool_name",
                "timestamp",
                "is_error",
            )
        },
        unique=[_t.c.message_id],
        id_column=_t.c.message_id,
    )
)
_ERROR_REPORTED = Prepared(select(exists().where(_same_call, _t.c.role == TOOL_RESULT)))
_MARK_FAILED = Prepared(update(_t).where(_same_call, _t.c.role == TOOL_USE).values(is_error=True))


class ToolCallRepository(Generic[Runner]):
    """Records tool uses and failed results, and counts them per tool."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection

    def record_use(self, message_id: int, session_id: str, use: ToolUse, now: datetime) -> None:
        """Record the ``tool_use`` message ``message_id``, failed already if an error result came first."""
        failed = use.call_id is not None and bool(
            _ERROR_REPORTED.scalar(self._connection, session_id=session_id, call_id=use.call_id)
        )
        self._insert(message_id, session_id, TOOL_USE, use.call_id, use.tool_name, now, failed)

    def record_result(self, message_id: int, session_id: str, result: ToolResult, now: datetime) -> None:
        """Record a ``tool_result`` message: only an error answering a call id matters to the counts."""
        if not result.is_error or result.call_id is None:
            return
        self._insert(message_id, session_id, TOOL_RESULT, result.call_id, None, now, True)
        _MARK_FAILED.rowcount(self._connection, session_id=session_id, call_id=result.call_id)

    def _insert(
        self,
        message_id: int,
        session_id: str,
        role: str,
        call_id: str | None,
        tool_name: str | None,
        now: datetime,
        is_error: bool,
    ) -> None:
        _INSERT.rowcount(
            self._connection,
            message_id=message_id,
            session_id=session_id,
            role=role,
            call_id=call_id,
            tool_name=tool_name,
            timestamp=now,
            is_error=is_error,
        )

    def usage(self, since: datetime | None, until: datetime | None) -> tuple[ToolUsageSummary, ...]:
        """Calls per tool with ``since <= timestamp < until`` (a None bound is open), most called first,
        then by tool name (code point order). A range walk of ``idx_tool_calls_report``."""
        rows = _USAGE[since is not None, until is not None].rows(self._connection, since=since, until=until)
        counts = [ToolUsageSummary(name, int(calls), int(errors)) for name, calls, errors in rows]
        # A handful of rows; Python's str order is code point order on every backend.
        return tuple(sorted(counts, key=lambda tool: (-tool.invocations, tool.tool_name)))


def _usage_statement(bounds: tuple[bool, bool], _dialect: Dialect) -> Select[Any]:
    """Calls and failed calls per tool; ``bounds``: whether ``since`` and ``until`` are given (as parameters)."""
    query = (
        select(_t.c.tool_name, func.count(), func.coalesce(func.sum(case((_t.c.is_error == true(), 1), else_=0)), 0))
        .where(_t.c.role == TOOL_USE)
        .group_by(_t.c.tool_name)
    )
    since, until = bounds
    if since:
        query = query.where(_t.c.timestamp >= bindparam("since"))
    if until:
        query = query.where(_t.c.timestamp < bindparam("until"))
    return query


_USAGE = PreparedShapes(_usage_statement)
