"""Rust-era SQLite files open as they are: stamped, upgraded, and every row kept as it was."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from freezegun import freeze_time

from starpod_session import SessionManager, ToolUsageSummary
from starpod_session._common.timestamps import parse_rfc3339
from starpod_session.storage.schema import BASELINE_REVISION, SEARCH_OBJECTS, head_revision, upgrade_schema

from ..helpers import RUST_FILES, raw_engine, raw_rows

OUR_TABLES = ("session_metadata", "session_messages", "usage_stats", "compaction_log")
#: Tables the library adds on adoption.
ADDED_TABLES = ("tool_calls", "usage_daily", "adk_app_states", "adk_user_states", "adk_sessions", "adk_events")
#: Columns of session_metadata that both fixtures have (the core.db file has is_archived besides).
SESSION_COLUMNS = (
    "id",
    "created_at",
    "last_message_at",
    "is_closed",
    "summary",
    "message_count",
    "channel",
    "channel_session_key",
    "title",
    "user_id",
    "is_read",
    "triggered_by",
)
DUPLICATE_KEY = ("telegram", "777", "bob")
KEPT_OPEN = "0b6f1c2e-1111-4a5b-9c3d-000000000006"


def as_dicts(rows: list[sqlite3.Row]) -> list[dict]:
    return [dict(row) for row in rows]


def foreign_dump(path: Path) -> dict[str, object]:
    """Everything in the file that belongs to somebody else: other tables, sqlx's log, and the crate's
    ``is_archived`` flags (which we adopt: they must keep the values the crate wrote)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as raw:
        tables = [name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        ours = (*OUR_TABLES, *ADDED_TABLES, "alembic_version", "sqlite_sequence", *SEARCH_OBJECTS)
        schema = {
            name: sql
            for name, tbl_name, sql in raw.execute("SELECT name, tbl_name, sql FROM sqlite_master")
            if tbl_name not in ours
        }
        dump: dict[str, object] = {"schema": schema}
        for table in tables:
            if table not in (*OUR_TABLES, *ADDED_TABLES, "alembic_version", *SEARCH_OBJECTS):
                dump[table] = raw.execute(f"SELECT * FROM [{table}] ORDER BY rowid").fetchall()
        session_columns = {row[1] for row in raw.execute("PRAGMA table_info(session_metadata)")}
        if "is_archived" in session_columns:
            dump["is_archived"] = raw.execute("SELECT id, is_archived FROM session_metadata ORDER BY id").fetchall()
    return dump


@pytest.fixture(params=RUST_FILES)
def rust_file(request: pytest.FixtureRequest, writable_copy) -> tuple[Path, Path]:
    """A writable copy of a Rust-era file, and a pristine second copy to compare against."""
    return writable_copy(request.param, "adopted.sqlite"), writable_copy(request.param, "original.sqlite")


def sessions_closed_as_duplicates(sessions: list[dict]) -> dict[str, str]:
    """Open sessions sharing (channel, key, user_id) with a more recent open one → that one's id."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for session in sessions:
        if not session["is_closed"] and session["channel_session_key"] is not None:
            groups[(session["channel"], session["channel_session_key"], session["user_id"])].append(session)
    closed: dict[str, str] = {}
    for members in groups.values():
        members.sort(key=lambda s: (s["last_message_at"], s["created_at"], s["id"]), reverse=True)
        for duplicate in members[1:]:
            closed[duplicate["id"]] = members[0]["id"]
    return closed


def test_a_rust_era_file_is_stamped_at_the_baseline_and_upgraded_to_head(rust_file):
    copy, original = rust_file
    with sqlite3.connect(copy) as raw:
        assert raw.execute("SELECT count(*) FROM _sqlx_migrations").fetchone()[0] > 0
        assert "alembic_version" not in {n for (n,) in raw.execute("SELECT name FROM sqlite_master")}

    with raw_engine(copy) as engine:
        upgrade_schema(engine, BASELINE_REVISION)  # recognised and stamped: the baseline is its schema
    assert [tuple(row) for row in raw_rows(copy, "alembic_version")] == [(BASELINE_REVISION,)]
    for table in OUR_TABLES:
        assert as_dicts(raw_rows(copy, table)) == as_dicts(raw_rows(original, table))

    SessionManager(copy).close()
    assert [tuple(row) for row in raw_rows(copy, "alembic_version")] == [(head_revision(),)]


def test_every_row_stays_as_the_rust_crate_wrote_it(rust_file):
    copy, original = rust_file
    before = {table: as_dicts(raw_rows(original, table)) for table in OUR_TABLES}

    SessionManager(copy).close()

    after = {table: as_dicts(raw_rows(copy, table, ", ".join(before[table][0]))) for table in OUR_TABLES}
    closed = sessions_closed_as_duplicates(before["session_metadata"])
    for table in ("session_messages", "usage_stats", "compaction_log"):
        assert after[table] == before[table]
    for old, new in zip(before["session_metadata"], after["session_metadata"], strict=True):
        if old["id"] in closed:
            assert new["is_closed"] == 1
            assert closed[old["id"]] in new["summary"]
            old, new = ({k: v for k, v in row.items() if k not in ("is_closed", "summary")} for row in (old, new))
        assert new == old


def test_other_crates_tables_and_columns_are_untouched(rust_file):
    copy, original = rust_file
    SessionManager(copy).close()
    before, after = foreign_dump(original), foreign_dump(copy)
    if "is_archived" not in before:
        after.pop("is_archived")  # added by 0007 (see the last test of this file)
    assert after == before


def test_every_row_is_readable_through_the_api_with_the_values_on_disk(rust_file):
    copy, original = rust_file
    sessions = as_dicts(raw_rows(original, "session_metadata", ", ".join(SESSION_COLUMNS)))
    messages = as_dicts(raw_rows(original, "session_messages"))
    usage = as_dicts(raw_rows(original, "usage_stats"))
    compactions = as_dicts(raw_rows(original, "compaction_log"))
    closed = sessions_closed_as_duplicates(sessions)

    with SessionManager(copy) as manager:
        for raw in sessions:
            meta = manager.get_session(raw["id"])
            expected = dict(raw)
            for name in ("created_at", "last_message_at"):
                expected[name] = parse_rfc3339(raw[name])
            expected["is_closed"] = bool(raw["is_closed"]) or raw["id"] in closed
            expected["is_read"] = bool(raw["is_read"])
            if raw["id"] in closed:
                expected["summary"] = meta.summary
            assert {name: getattr(meta, name) for name in SESSION_COLUMNS} == expected

        by_session: dict[str, list[dict]] = defaultdict(list)
        for raw in messages:
            by_session[raw["session_id"]].append(raw)
        assert any(len(raw["content"]) == 70_000 for raw in messages)
        for raw_session in sessions:
            got = manager.get_messages(raw_session["id"])
            assert [(m.id, m.session_id, m.role, m.content, m.timestamp) for m in got] == [
                (r["id"], r["session_id"], r["role"], r["content"], parse_rfc3339(r["timestamp"]))
                for r in by_session[raw_session["id"]]
            ]

        session_ids = {raw["session_id"] for raw in usage}
        assert session_ids - {raw["id"] for raw in sessions}, "the fixture holds an orphan usage row"
        for session_id in session_ids:
            rows = [raw for raw in usage if raw["session_id"] == session_id]
            summary = manager.session_usage(session_id)
            assert summary.total_input_tokens == sum(r["input_tokens"] for r in rows)
            assert summary.total_output_tokens == sum(r["output_tokens"] for r in rows)
            assert summary.total_cache_read == sum(r["cache_read"] for r in rows)
            assert summary.total_cache_write == sum(r["cache_write"] for r in rows)
            assert summary.total_cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows))
            assert summary.total_turns == len(rows)

        overview = manager.cost_overview()
    assert overview.total_cost_usd == pytest.approx(sum(r["cost_usd"] for r in usage))
    assert overview.total_input_tokens == sum(r["input_tokens"] for r in usage)
    assert overview.total_output_tokens == sum(r["output_tokens"] for r in usage)
    assert overview.total_turns == len(usage)
    assert {u.user_id: (pytest.approx(u.total_cost_usd), u.total_turns) for u in overview.by_user} == totals_by(
        usage, "user_id"
    )
    assert {m.model: (pytest.approx(m.total_cost_usd), m.total_turns) for m in overview.by_model} == totals_by(
        usage, "model"
    )
    assert as_dicts(raw_rows(copy, "compaction_log")) == compactions


def totals_by(usage: list[dict], column: str) -> dict[str, tuple[float, int]]:
    totals: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for row in usage:
        name = row[column] if row[column] is not None else "unknown"
        totals[name][0] += row["cost_usd"]
        totals[name][1] += 1
    return {name: (cost, turns) for name, (cost, turns) in totals.items()}


def test_the_duplicate_open_sessions_of_one_key_end_with_the_most_recent_open(rust_file):
    copy, _original = rust_file
    channel, key, user_id = DUPLICATE_KEY
    with SessionManager(copy) as manager:
        open_ones = [
            meta.id
            for meta in manager.list_sessions(100)
            if (meta.channel, meta.channel_session_key, meta.user_id) == DUPLICATE_KEY and not meta.is_closed
        ]
        assert open_ones == [KEPT_OPEN]
        with freeze_time("2026-03-19T08:00:00Z"):  # within the Telegram gap of its last message
            assert manager.open_session(channel, key, user_id=user_id).session_id == KEPT_OPEN


# -- archiving and tool statistics (the crate's v0.3 columns and messages) ---------------------------

#: The crate's own by-tool query (v0.3.2, ``cost_overview``), run on the original file as the truth.
CRATE_BY_TOOL_SQL = """
    SELECT json_extract(sm.content, '$.name') AS tool_name, COUNT(*) AS invocations,
           COALESCE(SUM(CASE WHEN tr.content IS NOT NULL AND json_extract(tr.content, '$.is_error') = 1
                             THEN 1 ELSE 0 END), 0) AS errors
    FROM session_messages sm
    LEFT JOIN session_messages tr
      ON tr.session_id = sm.session_id AND tr.role = 'tool_result'
     AND json_extract(tr.content, '$.tool_use_id') = json_extract(sm.content, '$.id')
    WHERE sm.role = 'tool_use' {since}
    GROUP BY tool_name ORDER BY invocations DESC
"""
#: Tool messages as the crate's agent saves them: one JSON object each (session 2 is open, session 1 archived).
CRATE_TOOL_MESSAGES = [
    (
        "0b6f1c2e-1111-4a5b-9c3d-000000000002",
        "tool_use",
        '{"type":"tool_use","id":"tu_2","name":"VaultGet","input":{}}',
    ),
    (
        "0b6f1c2e-1111-4a5b-9c3d-000000000002",
        "tool_result",
        '{"type":"tool_result","tool_use_id":"tu_2","content":"key not found","is_error":true}',
    ),
    ("0b6f1c2e-1111-4a5b-9c3d-000000000002", "tool_use", '{"type":"tool_use","id":"tu_3","name":"MemorySearch"}'),
    ("0b6f1c2e-1111-4a5b-9c3d-000000000004", "tool_use", '{"type":"tool_use","id":"tu_4","input":{}}'),
    (
        "0b6f1c2e-1111-4a5b-9c3d-000000000004",
        "tool_result",
        '{"type":"tool_result","tool_use_id":"tu_2","content":"other session","is_error":true}',
    ),
]


def as_the_crate_writes(paths: tuple[Path, ...]) -> None:
    """Archive one more session and save tool calls, with the crate's statements, in each file."""
    for path in paths:
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE session_metadata SET is_archived = 1 WHERE id = ?", (KEPT_OPEN,))
            raw.executemany(
                "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)",
                [
                    (s, role, content, f"2026-03-19T22:00:0{n}+00:00")
                    for n, (s, role, content) in enumerate(CRATE_TOOL_MESSAGES)
                ],
            )


def crate_by_tool(path: Path, since: str | None = None) -> list[tuple[str, int, int]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as raw:
        rows = raw.execute(
            CRATE_BY_TOOL_SQL.format(since="" if since is None else "AND sm.timestamp >= ?"),
            () if since is None else (since,),
        ).fetchall()
    return sorted(((name or "unknown", calls, errors) for name, calls, errors in rows), key=lambda r: (-r[1], r[0]))


def test_a_core_db_keeps_its_archived_flags_and_counts_its_tool_calls_as_the_crate_does(writable_copy):
    copy = writable_copy("rust-core-db-0.3.sqlite", "core.sqlite")
    original = writable_copy("rust-core-db-0.3.sqlite", "original.sqlite")
    as_the_crate_writes((copy, original))
    flags = {row["id"]: bool(row["is_archived"]) for row in raw_rows(original, "session_metadata", "id, is_archived")}
    assert sorted(flags.values()) == [False] * 4 + [True] * 2

    with SessionManager(copy) as manager:
        assert {session_id: manager.get_session(session_id).is_archived for session_id in flags} == flags
        assert {m.id for m in manager.list_sessions(100)} == {i for i, archived in flags.items() if not archived}
        assert {m.id for m in manager.list_sessions(100, archived=True)} == {i for i, a in flags.items() if a}
        assert len(manager.list_sessions(100, archived=None)) == len(flags)

        by_tool = [(t.tool_name, t.invocations, t.errors) for t in manager.cost_overview().by_tool]
        assert by_tool == crate_by_tool(original) == [("MemorySearch", 2, 0), ("VaultGet", 1, 1), ("unknown", 1, 0)]
        since = "2026-03-19T22:00:02+00:00"
        later = [(t.tool_name, t.invocations, t.errors) for t in manager.cost_overview(since=since).by_tool]
        assert later == crate_by_tool(original, since) == [("MemorySearch", 1, 0), ("unknown", 1, 0)]

        # Writing on through the API keeps counting, as the crate's query would.
        manager.save_message(KEPT_OPEN, "tool_use", '{"type":"tool_use","id":"tu_5","name":"VaultGet"}')
        manager.save_message(KEPT_OPEN, "tool_result", '{"type":"tool_result","tool_use_id":"tu_5","is_error":true}')
        assert manager.cost_overview().by_tool[1] == ToolUsageSummary("VaultGet", 2, 2)
    assert crate_by_tool(copy)[1] == ("VaultGet", 2, 2)


def test_a_file_without_is_archived_gets_it_with_every_session_unarchived(writable_copy):
    copy = writable_copy("rust-session-db-2026-03.sqlite", "session.sqlite")
    with sqlite3.connect(copy) as raw:
        assert "is_archived" not in {row[1] for row in raw.execute("PRAGMA table_info(session_metadata)")}
        ids = [row[0] for row in raw.execute("SELECT id FROM session_metadata")]
    with SessionManager(copy) as manager:
        assert {manager.get_session(i).is_archived for i in ids} == {False}
        assert len(manager.list_sessions(100)) == len(ids)
        assert [(t.tool_name, t.invocations, t.errors) for t in manager.cost_overview().by_tool] == crate_by_tool(copy)


def test_a_rust_era_file_gets_its_search_index_on_upgrade(rust_file):
    copy, original = rust_file
    messages = as_dicts(raw_rows(original, "session_messages"))
    words = [w for m in messages for w in m["content"].split() if w.isalpha() and 4 <= len(w) <= 20]
    word = max(set(words), key=lambda w: (words.count(w), w))
    with SessionManager(copy) as manager:
        hits = manager.search_messages(word, limit=1000)
    expected = {m["id"] for m in messages if word.lower() in {w.lower() for w in m["content"].split()}}
    assert expected and expected <= {hit.message_id for hit in hits}
