"""Cost reports: totals, the per-user, per-model and per-day breakdowns and their order, ``since`` and ``until``."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import make_url

from starpod_session import (
    Channel,
    CostOverview,
    DailyModelCost,
    ModelCostSummary,
    SessionManager,
    UsageRecord,
    UserCostSummary,
)

from ..helpers import record_at

T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


def test_until_is_exclusive_and_combines_with_since(manager, session_id):
    for offset, cost in [(-1, 1.0), (0, 2.0), (1, 4.0), (2, 8.0)]:
        record_at(manager, session_id, T0 + timedelta(hours=offset), UsageRecord(cost_usd=cost))
    assert manager.cost_overview(until=T0).total_cost_usd == 1.0
    assert manager.cost_overview(since=T0, until=T0 + timedelta(hours=2)).total_cost_usd == 6.0
    assert manager.cost_overview(until="2026-03-20T13:00:00.000001+00:00").total_cost_usd == 7.0
    assert manager.cost_overview(since=T0, until=T0).total_turns == 0  # an empty range


def test_cache_reads_and_writes_are_totalled_per_user_per_model_and_overall(manager, session_id):
    manager.record_usage(session_id, UsageRecord(10, 1, 100, 5, 0.5, "opus", "alice"), turn=1)
    manager.record_usage(session_id, UsageRecord(20, 2, 200, 0, 0.25, "sonnet", "alice"), turn=2)
    manager.record_usage(session_id, UsageRecord(30, 3, 0, 7, 1.0, "opus", "bob"), turn=1)
    overview = manager.cost_overview()
    assert (overview.total_cache_read, overview.total_cache_write) == (300, 12)
    assert overview.total_input_tokens == 60  # cache tokens are not input tokens
    assert overview.by_user == (
        UserCostSummary("bob", 1.0, 30, 3, 1, total_cache_read=0, total_cache_write=7),
        UserCostSummary("alice", 0.75, 30, 3, 2, total_cache_read=300, total_cache_write=5),
    )
    assert overview.by_model == (
        ModelCostSummary("opus", 1.5, 40, 4, 2, total_cache_read=100, total_cache_write=12),
        ModelCostSummary("sonnet", 0.25, 20, 2, 1, total_cache_read=200, total_cache_write=0),
    )


def test_summaries_built_the_old_way_still_work():
    assert UserCostSummary("u", 1.0, 1, 1, 1).total_cache_read == 0
    assert ModelCostSummary("m", 1.0, 1, 1, 1).total_cache_write == 0
    assert CostOverview(0.0, 0, 0, 0, (), ()).by_day == ()


def test_by_day_totals_each_model_per_utc_day_ordered_by_day_then_cost(manager, session_id):
    day1, day2 = datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 3, 2, tzinfo=timezone.utc)
    rows = [
        (day1, UsageRecord(10, 1, 5, 0, 0.25, "haiku")),
        (
            day1 + timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
            UsageRecord(10, 1, 0, 2, 1.0, "opus"),
        ),
        (day1 + timedelta(hours=3), UsageRecord(10, 1, 0, 0, 0.5, "opus")),
        (day1 + timedelta(hours=4), UsageRecord(10, 1, 0, 0, 0.25, None)),
        (day2, UsageRecord(10, 1, 0, 0, 0.125, "opus")),  # midnight UTC: the next day
        (day2 + timedelta(hours=1), UsageRecord(10, 1, 0, 0, 2.0, "sonnet")),
    ]
    for moment, record in rows:
        record_at(manager, session_id, moment, record)
    assert manager.cost_overview().by_day == (
        DailyModelCost("opus", 1.5, 20, 2, 2, total_cache_read=0, total_cache_write=2, day=date(2026, 3, 1)),
        DailyModelCost("haiku", 0.25, 10, 1, 1, total_cache_read=5, total_cache_write=0, day=date(2026, 3, 1)),
        DailyModelCost("unknown", 0.25, 10, 1, 1, day=date(2026, 3, 1)),
        DailyModelCost("sonnet", 2.0, 10, 1, 1, day=date(2026, 3, 2)),
        DailyModelCost("opus", 0.125, 10, 1, 1, day=date(2026, 3, 2)),
    )
    assert [(d.day, d.model) for d in manager.cost_overview(since=day2).by_day] == [
        (date(2026, 3, 2), "sonnet"),
        (date(2026, 3, 2), "opus"),
    ]
    assert {d.day for d in manager.cost_overview(until=day2).by_day} == {date(2026, 3, 1)}


def test_by_day_of_no_usage_is_empty(manager):
    assert manager.cost_overview().by_day == ()


def test_by_day_is_the_utc_day_whatever_the_connections_time_zone(db_target, backend, tmp_path):
    """PostgreSQL would cast a timestamptz to the session's local date; the report must not."""
    if backend != "postgresql":
        pytest.skip("only PostgreSQL converts timestamps to the connection's time zone")
    url = make_url(db_target).update_query_dict({"options": "-c timezone=Pacific/Kiritimati"})  # UTC+14
    with SessionManager(url, tmp_path / "sessions") as manager:
        session_id = manager.create_session(Channel.MAIN, "k")
        record_at(manager, session_id, datetime(2026, 3, 1, 23, 0, tzinfo=timezone.utc), UsageRecord(cost_usd=1.0))
        [day] = manager.cost_overview().by_day
    assert day.day == date(2026, 3, 1)


def test_cost_overview_of_no_usage_is_all_zero(manager, session_id):
    assert manager.cost_overview() == CostOverview(0.0, 0, 0, 0, (), ())


def test_cost_overview_breakdowns_order_by_cost_descending_then_name(manager, session_id):
    rows = [
        ("carol", "sonnet", 1.0),
        ("bob", "haiku", 0.5),  # bob and alice tie on cost (0.5 each); so do haiku and opus
        ("alice", "opus", 0.5),
        ("dave", None, 0.0),
    ]
    for turn, (user, model, cost) in enumerate(rows, start=1):
        manager.record_usage(session_id, UsageRecord(10, 1, 0, 0, cost, model, user), turn=turn)
    overview = manager.cost_overview()
    assert (overview.total_cost_usd, overview.total_input_tokens, overview.total_output_tokens) == (2.0, 40, 4)
    assert overview.total_turns == 4
    assert overview.by_user == (
        UserCostSummary("carol", 1.0, 10, 1, 1),
        UserCostSummary("alice", 0.5, 10, 1, 1),
        UserCostSummary("bob", 0.5, 10, 1, 1),
        UserCostSummary("dave", 0.0, 10, 1, 1),
    )
    assert overview.by_model == (
        ModelCostSummary("sonnet", 1.0, 10, 1, 1),
        ModelCostSummary("haiku", 0.5, 10, 1, 1),
        ModelCostSummary("opus", 0.5, 10, 1, 1),
        ModelCostSummary("unknown", 0.0, 10, 1, 1),
    )


def test_names_that_tie_on_cost_are_ordered_by_code_point_whatever_the_database_locale(manager, session_id):
    """Upper case before lower case, accented letters after z: the order of the bytes, not of a language.

    The test server databases use a linguistic (ICU en-US) collation, which would
    put ``alice`` before ``Bob`` and ``émile`` before ``Zoë``.
    """
    names = ["émile", "alice", "Zoë", "Bob", "Ωmega"]
    for turn, name in enumerate(names, start=1):
        manager.record_usage(session_id, UsageRecord(1, 1, 0, 0, 0.5, f"model-{name}", name), turn=turn)
    overview = manager.cost_overview()
    by_code_point = ["Bob", "Zoë", "alice", "émile", "Ωmega"]
    assert [u.user_id for u in overview.by_user] == by_code_point
    assert [m.model for m in overview.by_model] == [f"model-{name}" for name in by_code_point]
    assert [d.model for d in overview.by_day] == [f"model-{name}" for name in by_code_point]


def test_rows_without_a_model_are_reported_as_unknown(manager, session_id):
    manager.record_usage(session_id, UsageRecord(input_tokens=5, cost_usd=0.5), turn=1)
    manager.record_usage(session_id, UsageRecord(input_tokens=7, cost_usd=0.25, model=None), turn=2)
    assert manager.cost_overview().by_model == (ModelCostSummary("unknown", 0.75, 12, 0, 2),)


def test_cost_overview_is_by_the_usage_rows_user_not_the_sessions(manager):
    admins_session = manager.create_session(Channel.MAIN, "k", user_id="admin")
    manager.record_usage(admins_session, UsageRecord(cost_usd=0.5, user_id="bob"), turn=1)
    assert [u.user_id for u in manager.cost_overview().by_user] == ["bob"]


@pytest.mark.parametrize(
    "since",
    [
        "2026-03-20T12:00:00Z",
        "2026-03-20T12:00:00+00:00",
        "2026-03-20T14:00:00+02:00",
        "2026-03-20T07:00:00-05:00",
        "2026-03-20T12:00:00.000000Z",
        T0,
        T0.astimezone(timezone(timedelta(hours=2))),
    ],
    ids=["Z", "+00:00", "+02:00", "-05:00", "fraction", "aware-utc", "aware-plus-2"],
)
def test_cost_overview_since_is_inclusive_and_accepts_every_spelling_of_the_instant(manager, session_id, since):
    record_at(manager, session_id, T0 - timedelta(microseconds=1), UsageRecord(input_tokens=1, cost_usd=1.0))
    record_at(manager, session_id, T0, UsageRecord(input_tokens=1, cost_usd=0.5))  # exactly at since: counts
    record_at(manager, session_id, T0 + timedelta(days=1), UsageRecord(input_tokens=1, cost_usd=0.25))
    overview = manager.cost_overview(since=since)
    assert (overview.total_cost_usd, overview.total_turns) == (0.75, 2)
    assert manager.cost_overview().total_turns == 3
