"""``total_prompt_tokens``: input plus cache read plus cache write, beside our ``total_input_tokens``.

The Rust crate (v0.3.2) now counts cache reads and writes inside its
``total_input_tokens``; we keep the original meaning (``input_tokens`` only) and
report the crate's figure as ``total_prompt_tokens``. The tests port the
crate's ``test_record_and_query_usage``, ``test_usage_cache_breakdown``,
``test_cost_overview_cache_breakdown`` and ``test_cost_overview_empty``: each of
the crate's ``total_input_tokens`` assertions is checked against
``total_prompt_tokens``, and ours against the sum of ``input_tokens``.
"""

from __future__ import annotations

from datetime import date

import attrs
import pytest

from starpod_session import (
    Channel,
    CostOverview,
    DailyModelCost,
    ModelCostSummary,
    UsageRecord,
    UsageSummary,
    UserCostSummary,
)


def usage(input_tokens, output_tokens, cache_read, cache_write, cost, model, user="admin"):
    return UsageRecord(input_tokens, output_tokens, cache_read, cache_write, cost, model, user)


def test_record_and_query_usage(manager):
    session_id = manager.create_session(Channel.MAIN, "test-key")
    manager.record_usage(session_id, usage(1000, 500, 200, 100, 0.01, "claude-sonnet"), 1)
    manager.record_usage(session_id, usage(800, 400, 150, 50, 0.008, "claude-sonnet"), 2)

    summary = manager.session_usage(session_id)
    # Turn 1: 1000 + 200 + 100 = 1300, turn 2: 800 + 150 + 50 = 1000.
    assert summary.total_prompt_tokens == 2300
    assert summary.total_input_tokens == 1800
    assert summary.total_output_tokens == 900
    assert summary.total_turns == 2
    assert summary.total_cost_usd == pytest.approx(0.018)


def test_usage_cache_breakdown(manager):
    session_id = manager.create_session(Channel.MAIN, "cache-test")
    manager.record_usage(session_id, usage(500, 200, 0, 4000, 0.05, "claude-sonnet"), 1)  # cache miss
    manager.record_usage(session_id, usage(100, 300, 4000, 0, 0.01, "claude-sonnet"), 2)  # cache hit

    summary = manager.session_usage(session_id)
    assert summary.total_prompt_tokens == 8600  # (500 + 0 + 4000) + (100 + 4000 + 0)
    assert summary.total_input_tokens == 600
    assert (summary.total_output_tokens, summary.total_cache_read, summary.total_cache_write) == (500, 4000, 4000)
    assert summary.total_turns == 2
    assert summary.total_cost_usd == pytest.approx(0.06)


def test_cost_overview_cache_breakdown(manager):
    session_id = manager.create_session(Channel.MAIN, "cache-cost")
    manager.record_usage(session_id, usage(200, 100, 0, 3000, 0.04, "claude-sonnet", "alice"), 1)
    manager.record_usage(session_id, usage(50, 150, 3000, 0, 0.01, "claude-sonnet", "alice"), 2)
    manager.record_usage(session_id, usage(800, 400, 0, 0, 0.03, "claude-haiku", "bob"), 3)

    overview = manager.cost_overview()
    assert overview.total_prompt_tokens == 7050
    assert overview.total_input_tokens == 1050
    assert (overview.total_output_tokens, overview.total_cache_read, overview.total_cache_write) == (650, 3000, 3000)

    users = {u.user_id: u for u in overview.by_user}
    assert (users["alice"].total_prompt_tokens, users["alice"].total_input_tokens) == (6250, 250)
    assert (users["alice"].total_cache_read, users["alice"].total_cache_write) == (3000, 3000)
    assert (users["bob"].total_prompt_tokens, users["bob"].total_input_tokens) == (800, 800)
    assert (users["bob"].total_cache_read, users["bob"].total_cache_write) == (0, 0)

    models = {m.model: m for m in overview.by_model}
    assert (models["claude-sonnet"].total_prompt_tokens, models["claude-haiku"].total_prompt_tokens) == (6250, 800)
    assert (models["claude-sonnet"].total_cache_read, models["claude-sonnet"].total_cache_write) == (3000, 3000)
    assert (models["claude-haiku"].total_cache_read, models["claude-haiku"].total_cache_write) == (0, 0)

    days = {d.model: d for d in overview.by_day}
    assert (days["claude-sonnet"].total_prompt_tokens, days["claude-haiku"].total_prompt_tokens) == (6250, 800)


def test_cost_overview_empty(manager):
    overview = manager.cost_overview()
    assert (overview.total_cost_usd, overview.total_input_tokens, overview.total_prompt_tokens) == (0.0, 0, 0)
    assert (overview.total_output_tokens, overview.total_turns) == (0, 0)
    assert overview.by_user == overview.by_model == overview.by_tool == ()
    assert manager.session_usage("no-such-session").total_prompt_tokens == 0


# -- the records themselves (no database) ---------------------------------------------------------

RECORDS = [
    UsageSummary(1, 2, 3, 4, 0.5, 6),
    UserCostSummary("u", 0.5, 1, 2, 6, 3, 4),
    ModelCostSummary("m", 0.5, 1, 2, 6, 3, 4),
    DailyModelCost("m", 0.5, 1, 2, 6, 3, 4, day=date(2026, 3, 20)),
    CostOverview(0.5, 1, 2, 6, (), (), 3, 4),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_total_prompt_tokens_is_derived_and_carried_by_asdict(record):
    assert record.total_prompt_tokens == 1 + 3 + 4
    assert attrs.asdict(record)["total_prompt_tokens"] == 8
    assert attrs.evolve(record, total_cache_read=10).total_prompt_tokens == 15
    with pytest.raises(TypeError):
        type(record)(**{**attrs.asdict(record, recurse=False), "total_prompt_tokens": 99})
