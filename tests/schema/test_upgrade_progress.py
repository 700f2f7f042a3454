"""``upgrade_schema(progress=...)``: the migrations that fill a table from the rows already stored
(0007 the tool calls, 0008 the search index, 0009 the daily usage, 0010 MariaDB's words) report
their batches, and an upgrade killed half-way through one is finished by running it again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from starpod_session import TransferProgress
from starpod_session.storage.schema import upgrade_schema

from ..helpers import downgrade_schema, raw_engine, row_counts
from .test_migrations import at, populate, revision_of, tables_as_they_are

BEFORE_BACKFILLS = "0006"
#: Of the messages added: every third a tool use, every ninth an error answering the use before it.
ADDED = 3000
WORDS_TABLE = "session_message_words"


def add_tool_messages(engine: sa.Engine) -> None:
    """More tool messages than one batch of 0007's backfill (1,000) holds, and usage for 0009."""
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
        usage = t["usage_stats"]
        connection.execute(
            sa.insert(usage),
            [
                dict(session_id="s-main", turn=100 + n, input_tokens=n, output_tokens=2 * n, cache_read=0,
                     cache_write=0, cost_usd=n / 7, model="claude-sonnet-4-5", user_id="admin", timestamp=at(n * 97))
                for n in range(300)
            ],
        )  # fmt: skip


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


@pytest.mark.parametrize("step", ["upgrade 0007", "upgrade 0010"])
def test_an_upgrade_killed_mid_backfill_is_finished_by_running_it_again(backend, before_backfills, step):
    if step == "upgrade 0010" and backend != "mariadb":
        pytest.skip("0010 fills a table on MariaDB only")
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
    assert len(resumed["tool_calls"]) == ADDED // 3 + len(range(1, ADDED, 9)) + 1
