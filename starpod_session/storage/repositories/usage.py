"""SQL of the ``usage_stats`` aggregate: recording turns and every cost report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import NullType

from ..._driver.runner import Runner
from ..._driver.statements import Prepared, PreparedShapes
from ...backends import backend_of, insert_unless_duplicate
from ...backends.base import utc_day
from ...backends.column_types import Count
from ...records import (
    CostOverview,
    DailyModelCost,
    ModelCostSummary,
    UsageRecord,
    UsageSummary,
    UserCostSummary,
)
from ..models import UNKNOWN_MODEL, UsageDailyRow, UsageRow

__all__ = ["UNKNOWN_MODEL", "USAGE_COLUMNS", "UsageRepository", "usage_columns"]

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
_TOKENS = {
    "input": _t.c.input_tokens,
    "output": _t.c.output_tokens,
    "cache_read": _t.c.cache_read,
    "cache_write": _t.c.cache_write,
}
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
_ROLLUP_NAMES = {
    "cost": "cost_usd",
    "input_high": "input_tokens_high",
    "input_low": "input_tokens_low",
    "output_high": "output_tokens_high",
    "output_low": "output_tokens_low",
}
_ROLLUP_SUMS = tuple(_daily.c[_ROLLUP_NAMES.get(part.name, part.name)].label(part.name) for part in _BREAKDOWN_HALVED)
#: :data:`_BREAKDOWN_HALVED` with the halves' sums as BIGINT like the rollup's columns (the
#: servers' SUM gives NUMERIC/DECIMAL, and a union with it would make every later sum one).
_EDGE_SUMS = tuple(
    part if part.name in ("cost", "turns") else cast(part, Count).label(part.name) for part in _BREAKDOWN_HALVED
)
T = TypeVar("T")
#: The parts of the overview's one result, in the order they come back.
_TOTAL, _BY_USER, _BY_MODEL, _BY_DAY = range(4)


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


#: The columns of a usage row but ``session_id`` and ``id``, in the order :func:`usage_columns` gives them.
USAGE_COLUMNS = (
    "turn",
    "input_tokens",
    "output_tokens",
    "cache_read",
    "cache_write",
    "cost_usd",
    "model",
    "user_id",
    "timestamp",
    "usage_key",
)


_APPEND = Prepared(
    insert_unless_duplicate(
        _t,
        {name: bindparam(name) for name in ("session_id", *USAGE_COLUMNS)},
        unique=(_t.c.session_id, _t.c.usage_key),
        id_column=_t.c.id,
    )
)


def usage_columns(turn: int, record: UsageRecord, now: datetime, key: str) -> dict[str, Any]:
    """The :data:`USAGE_COLUMNS` of the usage row :meth:`UsageRepository.append` stores."""
    values = (
        turn,
        record.input_tokens,
        record.output_tokens,
        record.cache_read,
        record.cache_write,
        float(record.cost_usd),
        record.model,
        record.user_id,
        now,
        key,
    )
    return dict(zip(USAGE_COLUMNS, values, strict=True))


class UsageRepository(Generic[Runner]):
    """Records usage rows and aggregates them in SQL."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection

    def append(self, session_id: str, turn: int, record: UsageRecord, now: datetime, key: str) -> None:
        """Store the usage of one turn of ``session_id`` under its idempotency ``key``.

        Nothing is stored when the session already has a row under ``key``.
        """
        _APPEND.rowcount(self._connection, session_id=session_id, **usage_columns(turn, record, now, key))

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

    def overview(self, since: datetime | None, until: datetime | None = None) -> CostOverview:
        """Totals, per user, per model and per (UTC day, model), over rows with
        ``since <= timestamp < until`` (either bound may be None).

        One prepared statement per shape of range (:func:`_overview_statement`),
        exact to the microsecond: the whole UTC days of the range come from
        ``usage_daily`` (kept by triggers, one row per day, model and user), the
        rows of a partial day at either edge are grouped from ``usage_stats``
        through ``idx_usage_stats_timestamp`` (see :func:`_windows`).
        Token totals are exact on every backend: the rollup and the edge scan
        both carry the sums of each count's high and low 32 bits.
        """
        whole_days, edges = _windows(since, until)
        first, end = whole_days or (None, None)
        values: dict[str, Any] = {"first": first, "end": end}
        for n, (low, high) in enumerate(edges):
            values[f"low_{n}"], values[f"high_{n}"] = low, high
        shape = _Range(days=whole_days is not None, first=first is not None, end=end is not None, edges=len(edges))
        by_part: dict[int, list[Any]] = {_TOTAL: [], _BY_USER: [], _BY_MODEL: [], _BY_DAY: []}
        for part, *row in _OVERVIEWS[shape].rows(self._connection, **values):
            by_part[part].append(row)
        # MariaDB's statement has no total row for a range without rows (a grouping of nothing).
        ((_name, _day, *totals),) = by_part[_TOTAL] or [(None, None, *[0] * len(_BREAKDOWN_HALVED))]
        cost, input_tokens, output_tokens, turns, cache_read, cache_write = _joined(totals)
        return CostOverview(
            total_cost_usd=cost,
            total_input_tokens=input_tokens,
            total_output_tokens=output_tokens,
            total_turns=turns,
            by_user=tuple(UserCostSummary(name, *_joined(row)) for name, _day, *row in by_part[_BY_USER]),
            by_model=tuple(ModelCostSummary(name, *_joined(row)) for name, _day, *row in by_part[_BY_MODEL]),
            total_cache_read=cache_read,
            total_cache_write=cache_write,
            by_day=tuple(
                DailyModelCost(name, *_joined(row), day=_as_date(day_value))
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
            if not backend_of(self._connection.dialect).is_integer_overflow(error):
                raise
        return report(_BREAKDOWN_HALVED)


class _Range(NamedTuple):
    """What tells apart the overview's statements: whether whole days are read from the
    rollup, and with which bounds, and how many partial days are scanned (see :func:`_windows`)."""

    days: bool
    first: bool
    end: bool
    edges: int


def _overview_statement(shape: _Range, dialect: Dialect) -> Select[Any]:
    """The overview of ``shape``: rows ``(part, name, day, *sums)`` ordered by part, day,
    cost descending, then name in code point order; its bounds are the parameters
    ``first`` and ``end`` (days), ``low_N`` and ``high_N`` (the instants of edge N).

    The groups, per (day, model, user), are the rollup's rows of whole days and the
    edge scans' groups; :func:`_shared_report` or, on MariaDB, :func:`_fanned_report`
    sums them up.
    """
    parts: list[Select[Any]] = []
    if shape.days:
        where = [_daily.c.day >= bindparam("first")] if shape.first else []
        where += [_daily.c.day < bindparam("end")] if shape.end else []
        parts.append(select(_daily.c.day, _daily.c.model, _daily.c.user_id, *_ROLLUP_SUMS).where(*where))
    row_day = utc_day(_t.c.timestamp)
    parts.extend(
        select(row_day.label("day"), _model_name.label("model"), _t.c.user_id, *_EDGE_SUMS)
        .where(_t.c.timestamp >= bindparam(f"low_{n}"), _t.c.timestamp < bindparam(f"high_{n}"))
        .group_by(row_day, _model_name, _t.c.user_id)
        for n in range(shape.edges)
    )
    groups = parts[0] if len(parts) == 1 else union_all(*parts)
    backend = backend_of(dialect)
    report = (_shared_report if backend.shares_report_groups else _fanned_report)(groups)
    return select(report).order_by(
        report.c.part, report.c.day, report.c.cost.desc(), backend.in_code_points(report.c.name)
    )


def _sums(source: Any) -> tuple[ColumnElement[Any], ...]:
    # Untyped: :func:`_joined` makes the numbers (a prepared statement's result processors
    # are chosen without the cursor's column types, which psycopg's Double would need).
    return tuple(
        func.coalesce(func.sum(source.c[part.name]), 0, type_=NullType()).label(part.name) for part in _BREAKDOWN_HALVED
    )


def _constant(value: int) -> ColumnElement[Any]:
    # A literal, not a parameter: the same expression must appear in SELECT and GROUP BY.
    return literal_column(str(value))


def _shared_report(groups: Any) -> Any:
    """The report from the groups read twice: per user, and per (day, model), from
    which the per-model and overall totals are summed (a few thousand rows a year).

    For SQLite and PostgreSQL, which compute a CTE read more than once only once.
    """
    groups = groups.cte("usage_groups")
    days = select(groups.c.day, groups.c.model, *_sums(groups)).group_by(groups.c.day, groups.c.model).cte("usage_days")
    no_day = cast(null(), Date)  # typed, or PostgreSQL takes the NULLs for text
    return union_all(
        select(_constant(_TOTAL).label("part"), null().label("name"), no_day.label("day"), *_sums(days)),
        select(_constant(_BY_USER), groups.c.user_id, no_day, *_sums(groups)).group_by(groups.c.user_id),
        select(_constant(_BY_MODEL), days.c.model, no_day, *_sums(days)).group_by(days.c.model),
        select(_constant(_BY_DAY), days.c.model, days.c.day, *(days.c[p.name] for p in _BREAKDOWN_HALVED)),
    ).subquery("report")


def _fanned_report(groups: Any) -> Any:
    """The report reading each derived table once, for MariaDB, which computes a CTE
    again at each reference (the edge scans ran four times).

    The groups fan out (joined to the constants 1 and 3) to per-user and per-(day,
    model) sums in one grouping, and those sums fan out again (to 0, 2 and 3) to the
    overall total, per model and per (day, model). A range without rows has no total row.
    """
    groups = groups.subquery("usage_groups")

    def fan_out(name: str, *values: int) -> Any:
        return union_all(*(select(_constant(value).label("part")) for value in values)).subquery(name)

    split = fan_out("split", _BY_USER, _BY_DAY)
    name = case((split.c.part == _constant(_BY_USER), groups.c.user_id), else_=groups.c.model)
    day = case((split.c.part == _constant(_BY_DAY), groups.c.day))
    level = (
        select(split.c.part, name.label("name"), day.label("day"), *_sums(groups))
        .select_from(groups.join(split, true()))
        .group_by(split.c.part, name, day)
        .subquery("usage_sums")
    )
    fan = fan_out("fan", _TOTAL, _BY_MODEL, _BY_DAY)
    user_row = level.c.part == _constant(_BY_USER)
    part = case((user_row, _constant(_BY_USER)), else_=fan.c.part)
    name = case((fan.c.part == _constant(_TOTAL), null()), else_=level.c.name)
    day = case((fan.c.part == _constant(_BY_DAY), level.c.day))
    return (
        select(part.label("part"), name.label("name"), day.label("day"), *_sums(level))
        .select_from(level.join(fan, or_(fan.c.part == _constant(_BY_DAY), ~user_row)))
        .group_by(part, name, day)
        .subquery("report")
    )


_OVERVIEWS = PreparedShapes(_overview_statement)


def _joined(row: Sequence[Any]) -> tuple[float, int, int, int, int, int]:
    """The values of :data:`_BREAKDOWN_HALVED` as those of :data:`_BREAKDOWN`, Python numbers:
    each token total joined exactly from its halves' sums (Decimals on the servers)."""
    cost, input_high, input_low, output_high, output_low, turns, read_high, read_low, write_high, write_low = row
    return (
        float(cost),
        (int(input_high) << _HALF_BITS) + int(input_low),
        (int(output_high) << _HALF_BITS) + int(output_low),
        int(turns),
        (int(read_high) << _HALF_BITS) + int(read_low),
        (int(write_high) << _HALF_BITS) + int(write_low),
    )


assert [part.name for part in _BREAKDOWN_HALVED] == [
    "cost",
    "input_high",
    "input_low",
    "output_high",
    "output_low",
    "turns",
    "cache_read_high",
    "cache_read_low",
    "cache_write_high",
    "cache_write_low",
], "_joined unpacks the halved breakdown in this order"


def _breakdown(row: Sequence[Any]) -> tuple[float, int, int, int, int, int]:
    """The values of :data:`_BREAKDOWN` (or :data:`_BREAKDOWN_HALVED`) as Python numbers.

    Drivers return Decimals for the servers' sums; halved token sums are joined exactly.
    """
    if len(row) == len(_BREAKDOWN_HALVED):
        return _joined(row)
    cost, inp, out, turns, cache_read, cache_write = row
    return float(cost), int(inp), int(out), int(turns), int(cache_read), int(cache_write)
