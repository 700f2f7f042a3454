"""``CostOverview.by_tool``: tool calls per tool, with their errors, from the saved messages.

The first four tests port the Rust crate's own (v0.3.2, ``test_cost_overview_by_tool_*``),
with its message shapes: one JSON object per message.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel, ToolUsageSummary

NOW = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


def tool_use(call_id, name, **extra):
    return json.dumps({"type": "tool_use", "id": call_id, "name": name, "input": {}, **extra})


def tool_result(call_id, is_error, content="ok"):
    return json.dumps({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error})


def by_tool(manager, **bounds):
    return [(t.tool_name, t.invocations, t.errors) for t in manager.cost_overview(**bounds).by_tool]


# -- ported from the crate --------------------------------------------------------------------


def test_cost_overview_by_tool_empty(manager):
    assert manager.cost_overview().by_tool == ()


def test_cost_overview_by_tool_counts(manager, session_id):
    for i in range(3):
        manager.save_message(session_id, "tool_use", tool_use(f"tu_mem_{i}", "MemorySearch", input={"query": "test"}))
        manager.save_message(session_id, "tool_result", tool_result(f"tu_mem_{i}", False, "some result"))
    manager.save_message(session_id, "tool_use", tool_use("tu_vault_0", "VaultGet", input={"key": "api_key"}))
    manager.save_message(session_id, "tool_result", tool_result("tu_vault_0", False, "secret-value"))
    manager.save_message(session_id, "tool_use", tool_use("tu_vault_1", "VaultGet", input={"key": "missing"}))
    manager.save_message(session_id, "tool_result", tool_result("tu_vault_1", True, "key not found"))

    overview = manager.cost_overview()
    assert overview.by_tool == (
        ToolUsageSummary("MemorySearch", invocations=3, errors=0),
        ToolUsageSummary("VaultGet", invocations=2, errors=1),
    )


def test_cost_overview_by_tool_since_filter(manager, session_id):
    manager.save_message(session_id, "tool_use", tool_use("tu_1", "CronList"))
    now = datetime.now(timezone.utc)

    assert by_tool(manager, since=(now + timedelta(hours=1)).isoformat()) == []
    assert by_tool(manager, since=(now - timedelta(days=365)).isoformat()) == [("CronList", 1, 0)]


def test_cost_overview_by_tool_without_result(manager, session_id):
    manager.save_message(session_id, "tool_use", tool_use("tu_orphan", "SkillList"))
    # No result means no error, not an error.
    assert by_tool(manager) == [("SkillList", 1, 0)]


# -- ours ---------------------------------------------------------------------------------------


def test_ties_on_invocations_are_ordered_by_name_in_code_point_order(manager, session_id):
    for n, name in enumerate(["b", "Z", "a", "é", "a"]):
        manager.save_message(session_id, "tool_use", tool_use(f"c{n}", name))
    assert by_tool(manager) == [("a", 2, 0), ("Z", 1, 0), ("b", 1, 0), ("é", 1, 0)]


@pytest.mark.parametrize(
    "content",
    [
        "not json at all",
        "",
        "[1, 2, 3]",
        '"a JSON string"',
        '{"type": "tool_use", "id": "x"}',
        '{"type": "tool_use", "id": "x", "name": null}',
        '{"type": "tool_use", "id": "x", "name": 42}',
        '{"name": "\\u0000nul"}',
        '{"name": "\\ud800 lone surrogate"}',
        "[" * 100_000,
    ],
)
def test_a_tool_use_without_a_usable_name_counts_as_unknown(manager, session_id, content):
    message_id = manager.save_message(session_id, "tool_use", content)
    assert by_tool(manager) == [("unknown", 1, 0)]
    assert [(m.id, m.content) for m in manager.get_messages(session_id)] == [(message_id, content)]


@pytest.mark.parametrize(
    ("flag", "failed"),
    [(True, True), (1, True), (1.0, True), (False, False), (0, False), ("true", False), (None, False), (2, False)],
)
def test_is_error_counts_as_sqlites_json_extract_equals_1_does(manager, session_id, flag, failed):
    manager.save_message(session_id, "tool_use", tool_use("c", "Bash"))
    manager.save_message(session_id, "tool_result", tool_result("c", flag))
    assert by_tool(manager) == [("Bash", 1, int(failed))]


def test_an_error_result_whose_key_is_spelt_with_escapes_still_counts(manager, session_id):
    # json.loads reads "tool\u005fuse_id" as "tool_use_id": a result is not passed over for how its key is spelt.
    manager.save_message(session_id, "tool_use", tool_use("c", "Bash"))
    manager.save_message(session_id, "tool_result", '{"tool\\u005fuse_id": "c", "is_error": true}')
    assert by_tool(manager) == [("Bash", 1, 1)]


def test_a_result_is_matched_in_its_own_session_only_and_by_exact_id(manager, session_id):
    other = manager.create_session(Channel.MAIN, "other")
    manager.save_message(session_id, "tool_use", tool_use("c1", "Bash"))
    manager.save_message(other, "tool_result", tool_result("c1", True))
    manager.save_message(session_id, "tool_result", tool_result("C1", True))
    manager.save_message(session_id, "tool_result", tool_result("c1 ", True))
    assert by_tool(manager) == [("Bash", 1, 0)]


def test_an_error_result_saved_before_its_use_still_counts(manager, session_id):
    manager.save_message(session_id, "tool_result", tool_result("early", True))
    manager.save_message(session_id, "tool_use", tool_use("early", "Bash"))
    assert by_tool(manager) == [("Bash", 1, 1)]


def test_a_use_counts_once_however_many_results_answer_it(manager, session_id):
    # The crate's LEFT JOIN counts such a use once per result; a call is one call.
    manager.save_message(session_id, "tool_use", tool_use("c", "Bash"))
    for flag in (False, True, True):
        manager.save_message(session_id, "tool_result", tool_result("c", flag))
    assert by_tool(manager) == [("Bash", 1, 1)]


def test_a_result_that_is_not_json_is_stored_and_matches_nothing(manager, session_id):
    manager.save_message(session_id, "tool_use", tool_use("c", "Bash"))
    manager.save_message(session_id, "tool_result", "boom")
    assert by_tool(manager) == [("Bash", 1, 0)]
    assert [m.content for m in manager.get_messages(session_id)][-1] == "boom"


def test_only_the_tool_use_role_counts(manager, session_id):
    manager.save_message(session_id, "assistant", tool_use("c", "Bash"))
    manager.save_message(session_id, "Tool_Use", tool_use("d", "Bash"))
    assert by_tool(manager) == []


def test_a_very_long_tool_name_is_counted_under_its_first_255_characters(manager, session_id):
    name = "T" * 300
    manager.save_message(session_id, "tool_use", tool_use("c", name))
    assert by_tool(manager) == [(name[:255], 1, 0)]


def test_since_and_until_apply_to_the_tool_use_messages_time(manager, session_id):
    with freeze_time(NOW) as clock:
        for hour, name in enumerate(["A", "B", "C"]):
            manager.save_message(session_id, "tool_use", tool_use(f"c{hour}", name))
            clock.tick(timedelta(hours=1))
        # The error arrives after the window closes: it still marks the call inside it.
        manager.save_message(session_id, "tool_result", tool_result("c1", True))

    window = dict(since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=2))
    assert by_tool(manager, **window) == [("B", 1, 1)]
    assert by_tool(manager, since=NOW + timedelta(hours=1)) == [("B", 1, 1), ("C", 1, 0)]
    assert by_tool(manager, until=NOW + timedelta(hours=1)) == [("A", 1, 0)]
