"""Usage accounting: per-session sums, exact totals at the bounds of the columns, and the compaction log.

The cost report's breakdowns and time ranges are in test_cost_report.py."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from starpod_session import (
    Channel,
    CostOverview,
    InvalidInput,
    ModelCostSummary,
    UsageRecord,
    UsageSummary,
    UserCostSummary,
)
from starpod_session.records import MAX_COST_USD, DailyModelCost
from starpod_session.storage.models import CompactionRow

from ..helpers import raw_connection

T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)
MAX = 2**63 - 1


def test_session_usage_sums_the_sessions_rows(manager, session_id):
    other = manager.create_session(Channel.MAIN, "other")
    manager.record_usage(session_id, UsageRecord(100, 10, 1000, 5, 0.25, "opus"), turn=1)
    manager.record_usage(session_id, UsageRecord(200, 20, 2000, 0, 0.5, "sonnet"), turn=2)
    manager.record_usage(session_id, UsageRecord(300, 30, 0, 7, 0.125, None), turn=2)  # a turn again
    manager.record_usage(other, UsageRecord(9999, 9999, 9999, 9999, 99.0, "opus"), turn=1)
    assert manager.session_usage(session_id) == UsageSummary(
        total_input_tokens=600,  # input_tokens only: cache reads and writes are apart
        total_output_tokens=60,
        total_cache_read=3000,
        total_cache_write=12,
        total_cost_usd=0.875,
        total_turns=3,  # rows, not distinct turn numbers
    )


def test_session_usage_is_zero_for_a_session_without_rows_and_for_an_unknown_id(manager, session_id):
    zero = UsageSummary(0, 0, 0, 0, 0.0, 0)
    assert manager.session_usage(session_id) == zero
    manager.record_usage(session_id, UsageRecord(1, 1, 1, 1, 1.0, "m"), turn=1)
    assert manager.session_usage(str(uuid.uuid4())) == zero


@pytest.mark.parametrize("cost", [0.1, 0.2, 1 / 3, 1e-12, 123456.789012345, 5e-324, MAX_COST_USD])
def test_a_cost_reads_back_as_the_same_double(manager, session_id, cost):
    manager.record_usage(session_id, UsageRecord(cost_usd=cost), turn=1)
    assert manager.session_usage(session_id).total_cost_usd == cost
    assert manager.cost_overview().by_user[0].total_cost_usd == cost


def test_costs_sum_as_doubles(manager, session_id):
    manager.record_usage(session_id, UsageRecord(cost_usd=0.1), turn=1)
    manager.record_usage(session_id, UsageRecord(cost_usd=0.2), turn=2)
    assert manager.session_usage(session_id).total_cost_usd == 0.30000000000000004  # 0.1 + 0.2 in doubles


def test_token_counts_up_to_2_pow_63_minus_1_round_trip(manager, session_id):
    manager.record_usage(session_id, UsageRecord(MAX, MAX, MAX, MAX, 0.0, "m"), turn=MAX)
    assert manager.session_usage(session_id) == UsageSummary(MAX, MAX, MAX, MAX, 0.0, 1)
    overview = manager.cost_overview()
    assert (overview.total_input_tokens, overview.total_output_tokens) == (MAX, MAX)


# -- sums beyond 64 bits: the same exact answer on every backend ------------------------------------


def test_token_totals_beyond_2_pow_63_minus_1_are_exact(manager, session_id):
    # SQLite's sum() stops at 2**63-1 ("integer overflow"); the servers' sums are exact.
    other = manager.create_session(Channel.MAIN, "other")
    with freeze_time(T0):
        for turn in (1, 2, 3):  # one (day, model, user) group whose own sums pass 2**63-1
            manager.record_usage(session_id, UsageRecord(MAX, MAX, MAX, MAX, 1.0, "m", "alice"), turn=turn)
    with freeze_time(T0 + timedelta(days=1)):
        manager.record_usage(other, UsageRecord(MAX, 1, MAX, 2, 0.5, "n", "bob"), turn=1)
    assert manager.session_usage(session_id) == UsageSummary(3 * MAX, 3 * MAX, 3 * MAX, 3 * MAX, 3.0, 3)
    alice = (3.0, 3 * MAX, 3 * MAX, 3, 3 * MAX, 3 * MAX)
    bob = (0.5, MAX, 1, 1, MAX, 2)
    assert manager.cost_overview() == CostOverview(
        total_cost_usd=3.5,
        total_input_tokens=4 * MAX,
        total_output_tokens=3 * MAX + 1,
        total_turns=4,
        by_user=(UserCostSummary("alice", *alice), UserCostSummary("bob", *bob)),
        by_model=(ModelCostSummary("m", *alice), ModelCostSummary("n", *bob)),
        total_cache_read=4 * MAX,
        total_cache_write=3 * MAX + 2,
        by_day=(
            DailyModelCost("m", *alice, day=T0.date()),
            DailyModelCost("n", *bob, day=T0.date() + timedelta(days=1)),
        ),
    )
    assert manager.cost_overview(since=T0 + timedelta(hours=1)).total_input_tokens == MAX


def test_token_totals_that_pass_2_pow_63_minus_1_only_across_groups_are_exact(manager, session_id):
    # Every (day, model, user) group stays in range; the overall total does not.
    for turn, user in enumerate(("alice", "bob", "carol"), start=1):
        manager.record_usage(session_id, UsageRecord(input_tokens=MAX, cost_usd=0.25, user_id=user), turn=turn)
    overview = manager.cost_overview()
    assert (overview.total_input_tokens, overview.total_cost_usd, overview.total_turns) == (3 * MAX, 0.75, 3)
    assert [u.total_input_tokens for u in overview.by_user] == [MAX, MAX, MAX]
    assert overview.by_model == (ModelCostSummary("unknown", 0.75, 3 * MAX, 0, 3),)
    assert manager.session_usage(session_id).total_input_tokens == 3 * MAX


def test_costs_at_the_bound_sum_to_the_same_finite_total(manager, session_id):
    # Above the bound the servers' and SQLite's double sums overflowed to an error, inf or 0.0.
    other = manager.create_session(Channel.MAIN, "other")
    for turn in range(1, 4):
        manager.record_usage(session_id, UsageRecord(cost_usd=MAX_COST_USD, model="m"), turn=turn)
    manager.record_usage(other, UsageRecord(cost_usd=MAX_COST_USD, model="n", user_id="bob"), turn=1)
    assert manager.session_usage(session_id).total_cost_usd == 3e15
    overview = manager.cost_overview()
    assert overview.total_cost_usd == 4e15
    assert [(u.user_id, u.total_cost_usd) for u in overview.by_user] == [("admin", 3e15), ("bob", 1e15)]


@pytest.mark.parametrize(
    "cost",
    [math.nextafter(MAX_COST_USD, math.inf), 10**15 + 1, 1e300, 1.7976931348623157e308, 10**400],
    ids=["next-double", "int-above", "1e300", "max-double", "int-10-pow-400"],
)
def test_a_cost_above_1e15_is_invalid_input(manager, session_id, cost):
    with pytest.raises(InvalidInput, match=r"0\.\.1e\+15") as raised:
        UsageRecord(cost_usd=cost)
    assert raised.value.field == "cost_usd"


def test_record_compaction_logs_a_row(manager, db_target, session_id):
    with freeze_time(T0):
        manager.record_compaction(session_id, "manual", 150_000, "Summary text ✓", 12)
    with raw_connection(db_target) as connection:
        rows = connection.execute(select(CompactionRow.__table__)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["session_id"] == session_id
    assert (row["trigger"], row["pre_tokens"], row["summary"], row["messages_compacted"]) == (
        "manual",
        150_000,
        "Summary text ✓",
        12,
    )
    assert row["timestamp"] == T0
