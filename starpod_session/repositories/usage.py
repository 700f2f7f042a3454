"""SQL of the ``usage_stats`` aggregate: recording turns and every cost report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Select,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ..column_types import Count
from ..models import UNKNOWN_MODEL, UsageDailyRow, UsageRow
from ..records import (
    CostOverview,
    DailyModelCost,
    ModelCostSummary,
    UsageRecord,
    UsageSummary,
    UserCostSummary,
)
from ._prepared import Prepared, insert_unless_duplicate
from .runner import Runner

__all__ = ["UsageRepository", "UNKNOWN_MODEL"]

_t = UsageRow.__table__
_daily = UsageDailyRow.__table__


def _total(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


_cost = func.coalesce(func.sum(_t.c.cost_usd), 0.0).label("cost")
_input = _total(_t.c.input_tokens).label("input")
_output = _total(_t.c.output_tokens).label("output")
_turns = func.count().label("turns")
_cache_read = _total(_t.c.cache_read).label("cache_read")
_cache_write = _total(_t.c.cache_write).label("cache_write")
_model_name = func.coalesce(_t.c.model, literal(UNKNOWN_MODEL)).label("name")
#: The columns of every breakdown row after its name, in the order the records take them.
_BREAKDOWN = (_cost, _input, _output, _turns, _cache_read, _cache_write)
Breakdown = tuple[ColumnElement[Any], ...]

#: The token columns of :data:`_BREAKDOWN`, by label.
_TOKENS = {"input": _t.c.input_tokens, "output": _t.c.output_tokens, "cache_read": _t.c.cache_read,
           "cache_write": _t.c.cache_write}  # fmt: skip
_HALF_BITS = 32


def _halved(breakdown: Breakdown) -> Breakdown:
    """``breakdown`` with each token sum split into the sums of the values' high and low 32 bits.

    SQLite sums integers in 64 bits and fails with "integer overflow" past
    2**63-1, where the servers' sums are exact. The halves of a token count are
    below 2**32, so their sums stay in range up to 2**31 rows, and
    :func:`_breakdown` joins them back into the exact total.
    """
    columns: list[ColumnElement[Any]] = []
    for part in breakdown:
        column = _TOKENS.get(part.name)
        if column is None:
            columns.append(part)
        else:
            columns += [
                # Literals, not parameters: PostgreSQL shifts a bigint by an integer only.
                _total(column.op(">>")(literal_column(str(_HALF_BITS)))).label(f"{part.name}_high"),
                _total(column.op("&")(literal_column(str(2**_HALF_BITS - 1)))).label(f"{part.name}_low"),
            ]
    return tuple(columns)


_BREAKDOWN_HALVED = _halved(_BREAKDOWN)
#: The rollup's columns under the names of :data:`_BREAKDOWN_HALVED`, in its order.
_ROLLUP_NAMES = {"cost": "cost_usd", "input_high": "input_tokens_high", "input_low": "input_tokens_low",
                 "output_high": "output_tokens_high", "output_low": "output_tokens_low"}  # fmt: skip
_ROLLUP_SUMS = tuple(_daily.c[_ROLLUP_NAMES.get(part.name, part.name)].label(part.name) for part in _BREAKDOWN_HALVED)
#: :data:`_BREAKDOWN_HALVED` with the halves' sums as BIGINT like the rollup's columns (the
#: servers' SUM gives NUMERIC/DECIMAL, and a union with it would make every later sum one).
_EDGE_SUMS = tuple(
    part if part.name in ("cost", "turns") else cast(part, Count).label(part.name) for part in _BREAKDOWN_HALVED
)
T = TypeVar("T")
#: The parts of the overview's one result, in the order they come back.
_TOTAL, _BY_USER, _BY_MODEL, _BY_DAY = range(4)


class utc_day(FunctionElement[Any]):  # noqa: N801 - reads like the SQL function it stands for
    """The UTC calendar day of a timestamp column, computed by the database."""

    type = Date()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # RFC 3339 text in UTC: the first ten characters are the day.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # A bare ::date would use the connection's TimeZone setting.
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


@compiles(utc_day)
def _utc_day_default(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # MariaDB: DATETIME(6) already holds UTC.
    return f"DATE({compiler.process(element.clauses, **kw)})"


def _as_date(value: date | str) -> date:
    """SQLite hands the day back as ``YYYY-MM-DD`` text, the servers as a ``date``."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def _windows(
    since: datetime | None, until: datetime | None
) -> tuple[tuple[date | None, date | None] | None, list[tuple[datetime, datetime]]]:
    """Split ``[since, until)`` into whole UTC days (first day, day after the last;
    ``None`` for an open side; or no days at all) and the instants of the partial
    days at its edges, each ``[low, high)``.

    A bound at midnight begins (``since``) or ends (``until``) a whole day; any
    other bound's day is partial, scanned row by row. A range within at most two
    days that holds no whole day is scanned whole.
    """
    first = end = None
    edges = []
    if since is not None:
        since = since.astimezone(timezone.utc)
        first = since.date() if since == _midnight(since.date()) else since.date() + timedelta(days=1)
    if until is not None:
        until = until.astimezone(timezone.utc)
        end = until.date()
    if since is not None and until is not None and first is not None and end is not None and first >= end:
        return None, [(since, until)]
    if since is not None and first is not None and since < _midnight(first):
        edges.append((since, _midnight(first)))
    if until is not None and end is not None and _midnight(end) < until:
        edges.append((_midnight(end), until))
    return (first, end), edges


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


_APPEND = Prepared(
    insert_unless_duplicate(
        _t,
        {name: bindparam(name) for name in (
            "session_id", "turn", "input_tokens", "output_tokens", "cache_read", "cache_write",
            "cost_usd", "model", "user_id", "timestamp", "usage_key",
        )},  # fmt: skip
        unique=(_t.c.session_id, _t.c.usage_key),
        id_column=_t.c.id,
    )
)


class UsageRepository(Generic[Runner]):
    """Records usage rows and aggregates them in SQL."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection

    def append(self, session_id: str, turn: int, record: UsageRecord, now: datetime, key: str) -> None:
        """Store the usage of one turn of ``session_id`` under its idempotency ``key``.

        Nothing is stored when the session already has a row under ``key``.
        """
        _APPEND.rowcount(
            self._connection,
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
            usage_key=key,
        )

    def session_summary(self: UsageRepository[Connection], session_id: str) -> UsageSummary:
        """Totals over the session's rows (zeros when it has none)."""

        def summed(breakdown: Breakdown) -> Sequence[Any]:
            return self._connection.execute(select(*breakdown).where(_t.c.session_id == session_id)).one()

        cost, input_tokens, output_tokens, turns, cache_read, cache_write = _breakdown(self._exactly(summed))
        return UsageSummary(
            total_input_tokens=input_tokens,
            total_output_tokens=output_tokens,
            total_cache_read=cache_read,
            total_cache_write=cache_write,
            total_cost_usd=cost,
            total_turns=turns,
        )

    def overview(self: UsageRepository[Connection], since: datetime | None, until: datetime | None = None) -> CostOverview:
        """Totals, per user, per model and per (UTC day, model), over rows with
        ``since <= timestamp < until`` (either bound may be None).

        One statement, exact to the microsecond: the whole UTC days of the range
        come from ``usage_daily`` (kept by triggers, one row per day, model and
        user), the rows of a partial day at either edge are grouped from
        ``usage_stats`` through ``idx_usage_stats_timestamp`` (see
        :func:`_windows`); the per-user totals are summed from those groups, the
        others from their sums per (day, model).
        Token totals are exact on every backend: the rollup and the edge scan
        both carry the sums of each count's high and low 32 bits.
        """
        whole_days, edges = _windows(since, until)
        parts: list[Select[Any]] = []
        if whole_days is not None:
            first, end = whole_days
            where = [] if first is None else [_daily.c.day >= first]
            where += [] if end is None else [_daily.c.day < end]
            parts.append(select(_daily.c.day, _daily.c.model, _daily.c.user_id, *_ROLLUP_SUMS).where(*where))
        for low, high in edges:
            day = utc_day(_t.c.timestamp)
            parts.append(
                select(day.label("day"), _model_name.label("model"), _t.c.user_id, *_EDGE_SUMS)
                .where(_t.c.timestamp >= low, _t.c.timestamp < high)
                .group_by(day, _model_name, _t.c.user_id)
            )
        groups = (parts[0] if len(parts) == 1 else union_all(*parts)).cte("usage_groups")

        def sums(source: Any) -> tuple[ColumnElement[Any], ...]:
            return tuple(func.coalesce(func.sum(source.c[part.name]), 0).label(part.name) for part in _BREAKDOWN_HALVED)

        # The groups are read twice: per user, and per (day, model), from which the
        # per-model and overall totals are summed (a few thousand rows a year).
        days = select(groups.c.day, groups.c.model, *sums(groups)).group_by(groups.c.day, groups.c.model).cte("usage_days")
        no_day = cast(null(), Date)  # typed, or PostgreSQL takes the NULLs for text
        report = union_all(
            select(literal_column(str(_TOTAL)).label("part"), null().label("name"), no_day.label("day"), *sums(days)),
            select(literal_column(str(_BY_USER)), groups.c.user_id, no_day, *sums(groups)).group_by(groups.c.user_id),
            select(literal_column(str(_BY_MODEL)), days.c.model, no_day, *sums(days)).group_by(days.c.model),
            select(literal_column(str(_BY_DAY)), days.c.model, days.c.day, *(days.c[p.name] for p in _BREAKDOWN_HALVED)),
        ).subquery("report")
        rows = self._connection.execute(
            select(report).order_by(report.c.part, report.c.day, report.c.cost.desc(), self._binary(report.c.name))
        ).all()
        by_part: dict[int, list[Any]] = {_TOTAL: [], _BY_USER: [], _BY_MODEL: [], _BY_DAY: []}
        for part, *row in rows:
            by_part[int(part)].append(row)
        ((_name, _day, *totals),) = by_part[_TOTAL]
        cost, input_tokens, output_tokens, turns, cache_read, cache_write = _breakdown(totals)
        return CostOverview(
            total_cost_usd=cost,
            total_input_tokens=input_tokens,
            total_output_tokens=output_tokens,
            total_turns=turns,
            by_user=tuple(UserCostSummary(name, *_breakdown(row)) for name, _day, *row in by_part[_BY_USER]),
            by_model=tuple(ModelCostSummary(name, *_breakdown(row)) for name, _day, *row in by_part[_BY_MODEL]),
            total_cache_read=cache_read,
            total_cache_write=cache_write,
            by_day=tuple(
                DailyModelCost(name, *_breakdown(row), day=_as_date(day_value))
                for name, day_value, *row in by_part[_BY_DAY]
            ),
        )

    def _exactly(self: UsageRepository[Connection], report: Callable[[Breakdown], T]) -> T:
        """``report(_BREAKDOWN)``, or on SQLite, when a token sum passed 2**63-1, ``report`` of the halved sums.

        The common case pays nothing for the rare one; every backend then gives
        the same exact total (the servers sum as NUMERIC/DECIMAL).
        """
        try:
            return report(_BREAKDOWN)
        except DBAPIError as error:
            if self._connection.dialect.name != "sqlite" or "integer overflow" not in str(error.orig):
                raise
        return report(_BREAKDOWN_HALVED)

    def _binary(self, expression: ColumnElement[Any]) -> ColumnElement[Any]:
        """Order names by code point on every backend (PostgreSQL would use its locale)."""
        if self._connection.dialect.name == "postgresql":
            return expression.collate("C")
        return expression


def _breakdown(row: Sequence[Any]) -> tuple[float, int, int, int, int, int]:
    """The values of :data:`_BREAKDOWN` (or :data:`_BREAKDOWN_HALVED`) as Python numbers.

    Drivers return Decimals for the servers' sums; halved token sums are joined exactly.
    """
    if len(row) == len(_BREAKDOWN_HALVED):
        values = iter(row)
        row = [
            (int(next(values)) << _HALF_BITS) + int(next(values)) if part.name in _TOKENS else next(values)
            for part in _BREAKDOWN
        ]
    cost, inp, out, turns, cache_read, cache_write = row
    return float(cost), int(inp), int(out), int(turns), int(cache_read), int(cache_write)
