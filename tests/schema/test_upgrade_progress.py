"""``upgrade_schema(progress=...)``: the migrations that fill a table from the rows already stored
(0007 the tool calls, 0008 the search index, 0009 the daily usage, 0010 MariaDB's words) report
their batches, and an upgrade killed half-way through one is finished by running it again."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from starpod_session import TransferProgress
from starpod_session.storage.schema import upgrade_schema

from ..helpers import RUST_FILES, downgrade_schema, migration_module, raw_engine, row_counts
from .test_migrations import at, populate, revision_of, tables_as_they_are

BEFORE_BACKFILLS = "0006"
#: Of the messages added: every third a tool use, every ninth an error answering the use before it.
ADDED = 3000
WORDS_TABLE = "session_message_words"


def add_tool_messages(engine: sa.Engine) -> None:
    """More tool messages than one batch of 0007's backfill (1,000) holds, and usage for 0009 (``usage_rows``)."""
    with engine.begin() as connection:
        t = tables_as_they_are(connection)
        rows = []
        for n in range(ADDED):
            if n % 3 == 0:
                role, content = "tool_use", json.dumps({"type": "tool_use", "id": f"tu_{n}", "name": f"tool{n % 5}"})
            elif n % 9 == 1:
                role, content = "tool_result", json.dumps({"tool_use_id": f"tu_{n - 1}", "is_error": True})
            else:
                role, content = "assistant", f"reply number {n} about lisbon"
            rows.append(dict(session_id="s-main", role=role, content=content, timestamp=at(100 + n)))
        connection.execute(sa.insert(t["session_messages"]), rows)
        connection.execute(sa.insert(t["usage_stats"]), usage_rows())


#: Usage rows added for 0009: several of its batches (1,000 rows, rounded up to whole days).
USAGE_ADDED = 3000


#: Of them, the last ones fall on one day: more than a batch of 0009's holds.
BUSY_DAY = 1200


def usage_rows() -> list[dict]:
    """``USAGE_ADDED`` usage rows over two weeks and a busy day, inserted out of time order, in four groups a
    day, with costs of magnitudes so unlike that a group's float sum depends on the order its rows are added in."""
    quiet = USAGE_ADDED - BUSY_DAY
    busy_day = at(20 * 24 * 60 + 15 * 60)  # a midnight (at(0) is 09:00)
    return [
        dict(session_id="s-main", turn=100 + n, input_tokens=n, output_tokens=2 * n, cache_read=0, cache_write=0,
             cost_usd=(n % 11 + 1) * 10.0 ** ((n * 5) % 13 - 6) / 3, model=("claude-sonnet-4-5", None)[n % 2],
             user_id=("admin", "bob")[n // 2 % 2],
             timestamp=at((n * 7919) % quiet * 10) if n < quiet else busy_day + timedelta(minutes=n * 7919 % BUSY_DAY))
        for n in range(USAGE_ADDED)
    ]  # fmt: skip


@pytest.fixture
def before_backfills(empty_db_target: str) -> str:
    """A database at 0006 holding the migration tests' rows and ``ADDED`` more messages."""
    with raw_engine(empty_db_target, statement_timeout=None) as engine:
        upgrade_schema(engine, "0001")
        populate(engine)
        upgrade_schema(engine, BEFORE_BACKFILLS)
        add_tool_messages(engine)
    return empty_db_target


def derived_rows(engine: sa.Engine) -> dict[str, list[tuple]]:
    """What the backfills wrote, every column as the database gives it back."""
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        found = {}
        for name, key in (
            ("tool_calls", "message_id"),
            ("usage_daily", "day, model, user_id"),
            (WORDS_TABLE, "message_id, word"),
        ):
            if name in tables:
                found[name] = [
                    tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {name} ORDER BY {key}"))
                ]
        return found


def test_the_backfills_report_their_batches_up_to_their_totals(backend, before_backfills):
    events: list[TransferProgress] = []
    with raw_engine(before_backfills, statement_timeout=None) as engine:
        upgrade_schema(engine, progress=events.append)

    steps = [event for event in events if event.step == "upgrade"]
    assert [event.done for event in steps] == list(range(len(steps)))  # 0, then one more per migration
    assert steps[-1].done == steps[-1].total == 6  # 0007 to 0012
    filled = {(event.step, event.table) for event in events if event.step != "upgrade"}
    expected = {("upgrade 0007", "tool_calls"), ("upgrade 0008", "session_messages"), ("upgrade 0009", "usage_daily")}
    if backend == "mariadb":
        expected.add(("upgrade 0010", WORDS_TABLE))
    assert filled == expected
    for step, table in filled:
        counts = [(event.done, event.total) for event in events if (event.step, event.table) == (step, table)]
        done = [d for d, _ in counts]
        assert done == sorted(done) and done[0] == 0, (step, counts)
        assert {total for _, total in counts} == {counts[-1][1]} and done[-1] == counts[-1][1]
    tool_messages = ADDED // 3 + len(range(1, ADDED, 9)) + 1  # uses, error results, populate()'s one use
    assert [e.done for e in events if e.step == "upgrade 0007"] == [0, 334, 1334, tool_messages]  # results, then uses
    if backend == "mariadb":  # pages of 1,000 messages
        assert [e.done for e in events if e.step == "upgrade 0010"] == [0, 1000, 2000, 3000, 3005]
    usage = [e.done for e in events if e.step == "upgrade 0009"]  # whole days of about 1,000 rows
    assert len(set(usage)) >= 4 and usage[-1] > USAGE_ADDED, usage
    assert max(b - a for a, b in itertools.pairwise(usage)) >= BUSY_DAY, usage  # that day whole in one batch


def test_the_daily_rollup_filled_by_days_is_the_one_statements_to_the_bit(backend, before_backfills):
    rollup = migration_module("0009")
    dialect = "mariadb" if backend == "mariadb" else backend
    day, model, user, _one, cost, *halves = rollup._values(dialect, "usage_stats")
    one_statement = (
        f"INSERT INTO usage_daily (day, model, user_id, {', '.join(rollup.SUMMED)}) "
        f"SELECT {day}, {model}, {user}, COUNT(*), SUM({cost}), {', '.join(f'SUM({h})' for h in halves)} "
        f"FROM usage_stats GROUP BY {day}, {model}, {user}"
    )  # the fill as one statement over the whole table
    with raw_engine(before_backfills, statement_timeout=None) as engine:
        upgrade_schema(engine, "0009", progress=lambda event: None)
        by_days = derived_rows(engine)["usage_daily"]
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM usage_daily"))
            connection.execute(sa.text(one_statement))
        assert derived_rows(engine)["usage_daily"] == by_days
        assert len(by_days) > 50  # two weeks of four groups a day, and the busy day

    # The costs are such that adding a group's rows in another order (time order) gives other sums.
    groups: dict[tuple, list[tuple]] = {}
    for n, row in enumerate(usage_rows()):
        key = (row["timestamp"].date(), row["model"], row["user_id"])
        groups.setdefault(key, []).append((row["timestamp"], n, row["cost_usd"]))
    in_time_order = [sum(c for *_, c in sorted(rows)) != sum(c for *_, c in rows) for rows in groups.values()]
    assert sum(in_time_order) > 10


def test_the_rollups_batches_are_found_through_the_timestamp_index(tmp_path):
    path = str(tmp_path / "plan.db")
    with raw_engine(path, statement_timeout=None) as engine:
        upgrade_schema(engine, "0009")
        with engine.connect() as connection:
            plan = connection.execute(
                sa.text(f"EXPLAIN QUERY PLAN {migration_module('0009')._fill('sqlite', ('lo', 'hi'))}"),
                {"lo": "2026-01-01", "hi": "2026-01-02"},
            ).all()
    assert any("USING INDEX idx_usage_stats_timestamp" in row[-1] for row in plan), plan


# -- 0008 on SQLite: the search index in batches ---------------------------------------------------------

#: Words of the generated messages, some frequent and some rare, so that bm25 scores vary.
VOCABULARY = ("lisbon", "porto", "tram", "river", "bridge", "tile", "fado", "harbour", "custard", "hill")
#: Search queries compared: words, phrases, prefixes, boolean operators and a column filter.
QUERIES = (
    *VOCABULARY,
    "reply",
    "lisbon porto",
    '"river bridge"',
    "tra*",
    "fado OR tile",
    "hill NOT harbour",
    "NEAR(tram hill, 3)",
    "content: custard",
    "tool",
    "nothing_matches_this",
)


def add_plain_messages(engine: sa.Engine, count: int) -> None:
    """``count`` assistant messages of a few words each (more than one batch of 0008's SQLite backfill)."""
    with engine.begin() as connection:
        messages = tables_as_they_are(connection)["session_messages"]
        rows = [
            dict(
                session_id="s-main",
                role="assistant",
                content=" ".join(VOCABULARY[(n * k * k + k) % (3 + k)] for k in range(1 + n % 7)),
                timestamp=at(5000 + n % 1000),
            )
            for n in range(count)
        ]
        connection.execute(sa.insert(messages), rows)


def search_answers(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Each query's hits (message id) and bm25 score, in id order."""
    with engine.connect() as connection:
        return {
            query: [
                tuple(row)
                for row in connection.execute(
                    sa.text(
                        "SELECT rowid, bm25(session_messages_fts) FROM session_messages_fts "
                        "WHERE session_messages_fts MATCH :query ORDER BY rowid"
                    ),
                    {"query": query},
                )
            ]
            for query in QUERIES
        }


def assert_searched_as_a_rebuild_would(engine: sa.Engine) -> None:
    """The index passes FTS5's integrity check and answers every query as one ``rebuild`` of it does."""
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO session_messages_fts(session_messages_fts, rank) VALUES ('integrity-check', 1)")
        )
    built = search_answers(engine)
    assert sum(map(len, built.values())) > 0
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO session_messages_fts(session_messages_fts) VALUES ('rebuild')"))
    assert search_answers(engine) == built


@pytest.fixture
def many_messages(tmp_path) -> str:
    """A SQLite file at 0006 holding more messages than two batches of 0008's backfill."""
    path = str(tmp_path / "many.db")
    with raw_engine(path, statement_timeout=None) as engine:
        upgrade_schema(engine, "0001")
        populate(engine)
        upgrade_schema(engine, BEFORE_BACKFILLS)
        add_tool_messages(engine)
        add_plain_messages(engine, 2 * migration_module("0008").BATCH)
    return path


def test_the_search_index_is_built_in_batches_and_searched_as_a_rebuild(many_messages):
    events: list[TransferProgress] = []
    with raw_engine(many_messages, statement_timeout=None) as engine:
        upgrade_schema(engine, progress=events.append)
        assert_searched_as_a_rebuild_would(engine)
        (messages,) = row_counts(engine, ["session_messages"]).values()

    batch = migration_module("0008").BATCH
    done = [e.done for e in events if e.step == "upgrade 0008"]
    assert done == [0, batch, 2 * batch, messages]
    assert {e.total for e in events if e.step == "upgrade 0008"} == {messages}


@pytest.mark.parametrize("name", RUST_FILES)
def test_a_rust_era_files_search_index_is_searched_as_a_rebuild(writable_copy, name):
    with raw_engine(writable_copy(name), statement_timeout=None) as engine:
        upgrade_schema(engine, progress=lambda event: None)
        assert_searched_as_a_rebuild_would(engine)


KILLED_UPGRADE = """
import os, signal, sys
from starpod_session.backends.engine import create_storage_engine, to_url
from starpod_session.storage.schema import upgrade_schema

target, step = sys.argv[1:]

def kill_mid_backfill(event):
    if event.step == step and 0 < event.done < event.total:
        os.kill(os.getpid(), signal.SIGKILL)  # a batch written, the backfill not finished

upgrade_schema(create_storage_engine(to_url(target), statement_timeout=None), progress=kill_mid_backfill)
"""


@pytest.mark.parametrize("step", ["upgrade 0007", "upgrade 0008", "upgrade 0009", "upgrade 0010"])
def test_an_upgrade_killed_mid_backfill_is_finished_by_running_it_again(backend, before_backfills, step):
    if step == "upgrade 0010" and backend != "mariadb":
        pytest.skip("0010 fills a table on MariaDB only")
    if step == "upgrade 0008":
        if backend != "sqlite":
            pytest.skip("0008 is one statement of DDL on the servers")
        with raw_engine(before_backfills, statement_timeout=None) as engine:
            add_plain_messages(engine, 2 * migration_module("0008").BATCH)
    with raw_engine(before_backfills, statement_timeout=None) as engine:
        counts = row_counts(engine, ("session_metadata", "session_messages", "usage_stats", "compaction_log"))

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_UPGRADE, before_backfills, step], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    with raw_engine(before_backfills, statement_timeout=None) as engine:
        upgrade_schema(engine)  # the same upgrade again finishes
        assert revision_of(engine) == "0012"
        resumed = derived_rows(engine)
        assert row_counts(engine, counts) == counts
        downgrade_schema(engine, BEFORE_BACKFILLS)
        upgrade_schema(engine)  # the reference: the same rows upgraded in one go
        assert derived_rows(engine) == resumed  # nothing doubled, nothing lost
        if backend == "sqlite":
            assert_searched_as_a_rebuild_would(engine)
    assert len(resumed["tool_calls"]) == ADDED // 3 + len(range(1, ADDED, 9)) + 1
