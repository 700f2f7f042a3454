"""SQL of the ``usage_stats`` aggregate: recording turns and every cost report."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, insert, literal, select
from sqlalchemy.orm import Session

from ..models import UsageRow
from ..records import CostOverview, ModelCostSummary, UsageRecord, UsageSummary, UserCostSummary

__all__ = ["UsageRepository", "UNKNOWN_MODEL"]

#: How rows recorded without a model are reported.
UNKNOWN_MODEL = "unknown"

_t = UsageRow.__table__


def _total(column: ColumnElement) -> ColumnElement:
    return func.coalesce(func.sum(column), 0)


_cost = func.coalesce(func.sum(_t.c.cost_usd), 0.0).label("cost")
_input = _total(_t.c.input_tokens).label("input")
_output = _total(_t.c.output_tokens).label("output")
_turns = func.count().label("turns")
_model_name = func.coalesce(_t.c.model, literal(UNKNOWN_MODEL)).label("name")


class UsageRepository:
    """Records usage rows and aggregates them in SQL."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def append(self, session_id: str, turn: int, record: UsageRecord, now: datetime) -> None:
        """Store the usage of one turn of ``session_id``."""
        self._s.execute(
            insert(_t).values(
                session_id=session_id,
                turn=turn,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cache_read=record.cache_read,
                cache_write=record.cache_write,
                cost_usd=float(record.cost_usd),
                model=record.model,
                user_id=record.user_id,
                timestamp=now,
            )
        )

    def session_summary(self, session_id: str) -> UsageSummary:
        """Totals over the session's rows (zeros when it has none)."""
        row = self._s.execute(
            select(
                _input,
                _output,
                _total(_t.c.cache_read),
                _total(_t.c.cache_write),
                _cost,
                _turns,
            ).where(_t.c.session_id == session_id)
        ).one()
        return UsageSummary(
            total_input_tokens=int(row[0]),
            total_output_tokens=int(row[1]),
            total_cache_read=int(row[2]),
            total_cache_write=int(row[3]),
            total_cost_usd=float(row[4]),
            total_turns=int(row[5]),
        )

    def overview(self, since: datetime | None) -> CostOverview:
        """Totals, per user and per model, over rows with ``timestamp >= since`` (all if None)."""
        where = [] if since is None else [_t.c.timestamp >= since]
        totals = self._s.execute(select(_cost, _input, _output, _turns).where(*where)).one()
        by_user = self._s.execute(
            select(_t.c.user_id, _cost, _input, _output, _turns)
            .where(*where)
            .group_by(_t.c.user_id)
            .order_by(_cost.desc(), self._binary(_t.c.user_id))
        )
        by_model = self._s.execute(
            select(_model_name, _cost, _input, _output, _turns)
            .where(*where)
            .group_by(_model_name)
            .order_by(_cost.desc(), self._binary(_model_name))
        )
        return CostOverview(
            total_cost_usd=float(totals.cost),
            total_input_tokens=int(totals.input),
            total_output_tokens=int(totals.output),
            total_turns=int(totals.turns),
            by_user=tuple(
                UserCostSummary(name, float(cost), int(inp), int(out), int(turns))
                for name, cost, inp, out, turns in by_user
            ),
            by_model=tuple(
                ModelCostSummary(name, float(cost), int(inp), int(out), int(turns))
                for name, cost, inp, out, turns in by_model
            ),
        )

    def _binary(self, expression: ColumnElement) -> ColumnElement:
        """Order names by code point on every backend (PostgreSQL would use its locale)."""
        if self._s.get_bind().dialect.name == "postgresql":
            return expression.collate("C")
        return expression
