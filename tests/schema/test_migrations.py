"""The Alembic baseline creates exactly the models' schema, on every backend."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from starpod_session import SessionManager, UsageRecord, UsageSummary
from starpod_session.storage.models import Base
from starpod_session.storage.schema import (
    BASELINE_REVISION,
    EXPRESSION_INDEXES,
    SEARCH_OBJECTS,
    alembic_config,
    current_revision,
    expression_index_warnings_silenced,
    head_revision,
    include_in_comparison,
    schema_drift,
    upgrade_schema,
)

from ..helpers import downgrade_schema, raw_connection, raw_engine, revisions_in_order, row_counts

ROOT = Path(__file__).resolve().parents[2]
OUR_TABLES = {
    "session_metadata",
    "session_messages",
    "usage_stats",
    "usage_daily",
    "compaction_log",
    "tool_calls",
    "adk_app_states",
    "adk_user_states",
    "adk_sessions",
    "adk_events",
    "alembic_version",
}


def schema_differences(target: str) -> list:
    with raw_connection(target) as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_in_comparison}
        )
        with expression_index_warnings_silenced():
            return compare_metadata(context, Base.metadata)


def test_upgrade_of_an_empty_database_matches_the_models(empty_db_target):
    with raw_engine(empty_db_target) as engine:
        upgrade_schema(engine)
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            assert set(inspect(connection).get_table_names()) - SEARCH_OBJECTS == OUR_TABLES
    assert schema_differences(empty_db_target) == []


def test_sqlite_has_the_expression_indexes_the_comparison_cannot_see(tmp_path):
    path = tmp_path / "sessions.db"
    SessionManager(path).close()
    with raw_connection(path) as connection:
        created = dict(connection.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())
    assert set(EXPRESSION_INDEXES) <= set(created)
    # 0009's rollup replaced the report's covering index, and its cost to every insert.
    assert "idx_usage_stats_day_model_user" not in created


#: The DDL of the search objects of migrations 0008 (the table) and 0011 (the triggers, which
#: index messages in batches), which the comparison leaves out on purpose.
_INDEXED_UP_TO = "(SELECT coalesce(max(id), 0) FROM session_messages_fts_docsize)"
SQLITE_SEARCH_DDL = {
    ("table", "session_messages_fts"): (
        "CREATE VIRTUAL TABLE session_messages_fts USING fts5(content, content='session_messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 0')"
    ),
    ("trigger", "session_messages_fts_insert"): (
        "CREATE TRIGGER session_messages_fts_insert AFTER INSERT ON session_messages "
        f"WHEN new.id - {_INDEXED_UP_TO} NOT BETWEEN 1 AND 31 BEGIN "
        "INSERT INTO session_messages_fts(rowid, content) SELECT id, content FROM session_messages "
        f"WHERE id > {_INDEXED_UP_TO} OR id = new.id; END"
    ),
    ("trigger", "session_messages_fts_delete"): (
        f"CREATE TRIGGER session_messages_fts_delete AFTER DELETE ON session_messages WHEN old.id <= {_INDEXED_UP_TO} "
        "BEGIN INSERT INTO session_messages_fts(session_messages_fts, rowid, content) "
        "VALUES ('delete', old.id, old.content); END"
    ),
    ("trigger", "session_messages_fts_update"): (
        "CREATE TRIGGER session_messages_fts_update AFTER UPDATE OF content ON session_messages "
        f"WHEN old.id <= {_INDEXED_UP_TO} BEGIN "
        "INSERT INTO session_messages_fts(session_messages_fts, rowid, content) "
        "VALUES ('delete', old.id, old.content); "
        "INSERT INTO session_messages_fts(rowid, content) VALUES (new.id, new.content); END"
    ),
}


def test_the_search_index_exists_as_migrations_0008_0010_and_0011_made_it(backend, db_target, manager):
    with raw_connection(db_target) as connection:
        if backend == "sqlite":
            found = {
                (kind, name): sql
                for kind, name, sql in connection.exec_driver_sql(
                    "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'session_messages_fts%'"
                )
            }
            for key, sql in SQLITE_SEARCH_DDL.items():
                assert found[key] == sql
        elif backend == "postgresql":
            sql = connection.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_session_messages_search'"
            ).scalar_one()
            assert sql == "CREATE INDEX ix_session_messages_search ON public.session_messages USING gin (content_tsv)"
            column = connection.exec_driver_sql(
                "SELECT data_type, is_generated, generation_expression FROM information_schema.columns "
                "WHERE table_name = 'session_messages' AND column_name = 'content_tsv'"
            ).one()
            assert tuple(column) == (
                "tsvector",
                "ALWAYS",
                "to_tsvector('simple'::regconfig, \"left\"(content, 100000))",
            )
        else:
            create = connection.exec_driver_sql("SHOW CREATE TABLE session_messages").one()[1]
            assert "FULLTEXT" not in create  # 0010 replaced InnoDB's index by a table of words
            assert "`content` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_uca1400_as_ci NOT NULL" in create
            words = connection.exec_driver_sql("SHOW CREATE TABLE session_message_words").one()[1]
            for line in (
                "`word` varchar(64) NOT NULL",
                "`message_id` bigint(20) NOT NULL",
                "`hits` int(11) NOT NULL",
                "PRIMARY KEY (`word`,`message_id`)",
                "KEY `ix_session_message_words_message_id` (`message_id`)",
                "CONSTRAINT `fk_session_message_words_message_id_session_messages` FOREIGN KEY (`message_id`) "
                "REFERENCES `session_messages` (`id`) ON DELETE CASCADE",
            ):
                assert line in words


def test_opening_a_new_database_brings_it_to_head(empty_db_target, tmp_path):
    with SessionManager(empty_db_target, tmp_path / "sessions") as manager:
        manager.create_session("main", "k")
    with raw_connection(empty_db_target) as connection:
        assert current_revision(connection) == head_revision()
    assert schema_differences(empty_db_target) == []


def test_there_is_a_single_head_and_one_line_of_revisions_from_the_baseline():
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [head_revision()]
    assert scripts.get_bases() == [BASELINE_REVISION]
    order = revisions_in_order()
    assert (order[0], order[-1]) == (BASELINE_REVISION, head_revision())


def test_alembic_command_line_upgrades_an_empty_file(tmp_path):
    db = tmp_path / "nested" / "cli.db"
    for arguments in (["upgrade", "head"], ["check"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"db={db}", *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr
    assert schema_differences(str(db)) == []


# -- every revision, on every backend ------------------------------------------

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=timezone.utc)
OUR_DATA_TABLES = ("session_metadata", "session_messages", "usage_stats", "compaction_log")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def revision_of(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return current_revision(connection)


SESSIONS = [
    # id, channel, key, user, closed, summary, created, last message
    ("s-main", "main", "main", "admin", False, None, at(0), at(50)),
    ("s-dup-old", "telegram", "777", "bob", False, None, at(1), at(2)),
    ("s-dup-new", "telegram", "777", "bob", False, None, at(1), at(3)),
    ("s-dup-other-user", "telegram", "777", "alice", False, None, at(4), at(5)),
    ("s-closed", "telegram", "555", "admin", True, "Auto-closed: inactivity", at(6), at(7)),
]
MESSAGES = [
    ("s-main", "user", "Plan a weekend in Lisbon 🇵🇹"),
    ("s-main", "assistant", "Day 1: Alfama…\n" + "x" * 20_000),
    ("s-dup-old", "user", "first"),
    ("s-dup-new", "user", "second"),
    ("s-closed", "tool_use", '{"type": "tool_use", "id": "tu_1"}'),
]
USAGE = [
    # session, turn, input, output, cache read, cache write, cost, model, user
    ("s-main", 1, 1200, 300, 4000, 100, 0.0123, "claude-sonnet-4-5", "admin"),
    ("s-dup-new", 1, 800, 200, 0, 0, 0.004, None, "bob"),
    ("session-deleted-long-ago", 1, 10, 10, 0, 0, 0.001, "claude-haiku-4-5", "carol"),
]
COMPACTIONS = [("s-main", "auto", 150_000, "Earlier: Lisbon plans.", 12)]
#: Open sessions sharing (channel, key, user_id) with a more recent open one → that one.
DUPLICATES = {"s-dup-old": "s-dup-new"}


def tables_as_they_are(connection: sa.Connection) -> dict[str, sa.TableClause]:
    """Our tables with the model's columns the database has now, typed as the models type them.

    (Not PostgreSQL's generated ``content_tsv``, which only the database writes.)
    """
    tables = {}
    for name in OUR_DATA_TABLES:
        model = Base.metadata.tables[name]
        columns = [
            sa.column(c["name"], model.c[c["name"]].type)
            for c in inspect(connection).get_columns(name)
            if c["name"] in model.c
        ]
        tables[name] = sa.table(name, *columns)
    return tables


def populate(engine: sa.Engine) -> None:
    """Rows as the Rust crate could have left them, two open sessions for one key included."""
    with engine.begin() as connection:
        t = tables_as_they_are(connection)
        connection.execute(
            sa.insert(t["session_metadata"]),
            [
                dict(
                    id=i,
                    channel=ch,
                    channel_session_key=k,
                    user_id=u,
                    is_closed=closed,
                    summary=summary,
                    created_at=created,
                    last_message_at=last,
                    message_count=3,
                    title=f"title of {i}",
                    is_read=True,
                    triggered_by=None,
                )
                for i, ch, k, u, closed, summary, created, last in SESSIONS
            ],
        )
        connection.execute(
            sa.insert(t["session_messages"]),
            [dict(session_id=s, role=r, content=c, timestamp=at(10 + n)) for n, (s, r, c) in enumerate(MESSAGES)],
        )
        connection.execute(
            sa.insert(t["usage_stats"]),
            [
                dict(
                    session_id=s,
                    turn=turn,
                    input_tokens=i,
                    output_tokens=o,
                    cache_read=cr,
                    cache_write=cw,
                    cost_usd=cost,
                    model=model,
                    user_id=user,
                    timestamp=at(20 + n),
                )
                for n, (s, turn, i, o, cr, cw, cost, model, user) in enumerate(USAGE)
            ],
        )
        connection.execute(
            sa.insert(t["compaction_log"]),
            [
                dict(session_id=s, trigger=tr, pre_tokens=pre, summary=text, messages_compacted=n, timestamp=at(30))
                for s, tr, pre, text, n in COMPACTIONS
            ],
        )


def compaction_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        t = tables_as_they_are(connection)["compaction_log"]
        query = sa.select(t.c.session_id, t.c.trigger, t.c.pre_tokens, t.c.summary, t.c.messages_compacted)
        return [tuple(row) for row in connection.execute(query.order_by(t.c.id))]


def check_every_row_through_the_api(target: str, tmp_path: Path) -> None:
    with SessionManager(target, tmp_path / "sessions", auto_upgrade=False) as manager:
        for session_id, channel, key, user, closed, summary, created, last in SESSIONS:
            meta = manager.get_session(session_id)
            assert (meta.channel, meta.channel_session_key, meta.user_id) == (channel, key, user)
            assert (meta.created_at, meta.last_message_at) == (created, last)
            assert (meta.title, meta.message_count, meta.is_read, meta.triggered_by) == (
                f"title of {session_id}",
                3,
                True,
                None,
            )
            if session_id in DUPLICATES:
                assert meta.is_closed and DUPLICATES[session_id] in meta.summary
            else:
                assert (meta.is_closed, meta.summary) == (closed, summary)

        transcripts: dict[str, list] = defaultdict(list)
        for n, (session_id, role, content) in enumerate(MESSAGES):
            transcripts[session_id].append((role, content, at(10 + n)))
        for session_id, *_ in SESSIONS:
            assert [(m.role, m.content, m.timestamp) for m in manager.get_messages(session_id)] == transcripts[
                session_id
            ]

        for session_id in {row[0] for row in USAGE}:
            rows = [row for row in USAGE if row[0] == session_id]
            summary = manager.session_usage(session_id)
            assert (
                summary.total_input_tokens,
                summary.total_output_tokens,
                summary.total_cache_read,
                summary.total_cache_write,
                summary.total_turns,
            ) == (
                sum(r[2] for r in rows),
                sum(r[3] for r in rows),
                sum(r[4] for r in rows),
                sum(r[5] for r in rows),
                len(rows),
            )
            assert summary.total_cost_usd == pytest.approx(sum(r[6] for r in rows))
        overview = manager.cost_overview()
        assert overview.total_turns == len(USAGE)
        assert overview.total_cost_usd == pytest.approx(sum(r[6] for r in USAGE))
        assert {m.model for m in overview.by_model} == {"claude-sonnet-4-5", "claude-haiku-4-5", "unknown"}
        # Rows stored before the search index existed were indexed by its migration.
        assert [h.message_id for h in manager.search_messages("lisbon")] == [
            m.id for m in manager.get_messages("s-main") if m.role == "user"
        ]

        # Usable at head, not only readable: what each call writes reads back.
        opened = manager.open_session("main", "main")
        assert (opened.session_id, opened.created, opened.closed_session_id) == ("s-main", False, None)
        message_id = manager.save_message("s-dup-new", "user", "after the upgrade")
        [before, after] = manager.get_messages("s-dup-new")
        assert (before.content, after.content) == ("second", "after the upgrade")
        assert after.id == message_id and after.id > before.id
        manager.record_usage("s-dup-new", UsageRecord(1, 1), turn=2)
        assert manager.session_usage("s-dup-new") == UsageSummary(801, 201, 0, 0, 0.004, 2)


def test_every_revision_upgrades_a_database_holding_data(empty_db_target, tmp_path):
    with raw_engine(empty_db_target) as engine:
        upgrade_schema(engine, BASELINE_REVISION)
        populate(engine)
        counts = row_counts(engine, OUR_DATA_TABLES)
        for revision in revisions_in_order()[1:]:
            upgrade_schema(engine, revision)
            assert revision_of(engine) == revision
            assert row_counts(engine, OUR_DATA_TABLES) == counts, f"revision {revision} lost or added rows"
        assert compaction_rows(engine) == COMPACTIONS
    check_every_row_through_the_api(empty_db_target, tmp_path)


def test_head_to_base_to_head_round_trips_without_drift(empty_db_target):
    with raw_engine(empty_db_target) as engine:
        upgrade_schema(engine, BASELINE_REVISION)
        populate(engine)
        upgrade_schema(engine)
        for revision in reversed(revisions_in_order()[:-1]):
            downgrade_schema(engine, revision)  # one revision at a time, with rows in the tables
            assert revision_of(engine) == revision
            assert row_counts(engine, OUR_DATA_TABLES)["session_messages"] == len(MESSAGES)
        downgrade_schema(engine, "base")
        assert revision_of(engine) is None
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        upgrade_schema(engine)
        assert revision_of(engine) == head_revision()
        assert schema_drift(engine) == []
    assert schema_differences(empty_db_target) == []


def test_the_drift_check_passes_at_head_and_names_a_missing_index(empty_db_target):
    with raw_engine(empty_db_target) as engine:
        upgrade_schema(engine)
        assert schema_drift(engine) == []
        with engine.begin() as connection:
            index = Base.metadata.tables["usage_stats"].indexes
            [dropped] = [i for i in index if i.name == "idx_usage_stats_session"]
            dropped.drop(connection)
        assert schema_drift(engine) == ["add_index idx_usage_stats_session"]


# -- 0004: keys compare exactly on MariaDB ---------------------------------------------------------

EXACT_KEYS_REVISION = "0004"
EXACT_COLUMNS = [
    ("session_metadata", "channel"),
    ("session_metadata", "channel_session_key"),
    ("session_metadata", "user_id"),
    ("usage_stats", "model"),
    ("usage_stats", "user_id"),
]


def mariadb_collations(engine: sa.Engine) -> set[str]:
    """The collations of the columns compared by value (MariaDB only)."""
    query = sa.text(
        "SELECT collation_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = :table AND column_name = :column"
    )
    with engine.connect() as connection:
        return {
            connection.execute(query, {"table": table, "column": column}).scalar_one()
            for table, column in EXACT_COLUMNS
        }


def open_session_ids(engine: sa.Engine) -> dict[str, tuple[bool, str | None]]:
    with engine.connect() as connection:
        t = tables_as_they_are(connection)["session_metadata"]
        return {row.id: (row.is_closed, row.summary) for row in connection.execute(sa.select(t))}


def test_keys_differing_in_trailing_spaces_stay_apart_from_0004_on_and_a_downgrade_keeps_one_open(
    backend, empty_db_target, tmp_path
):
    before = ScriptDirectory.from_config(alembic_config()).get_revision(EXACT_KEYS_REVISION).down_revision
    with raw_engine(empty_db_target) as engine:
        upgrade_schema(engine, before)
        with engine.begin() as connection:
            t = tables_as_they_are(connection)
            session = dict(channel="main", user_id="u", created_at=at(0), message_count=1, is_read=True)
            connection.execute(
                sa.insert(t["session_metadata"]),
                [
                    dict(
                        session, id="s-k", channel_session_key="k", is_closed=False, summary=None, last_message_at=at(1)
                    ),
                    dict(
                        session,
                        id="s-k-space",
                        channel_session_key="k ",
                        is_closed=True,
                        summary="done",
                        last_message_at=at(2),
                    ),
                ],
            )
            connection.execute(
                sa.insert(t["usage_stats"]),
                [
                    dict(session_id="s-k", turn=1, cost_usd=1.0, model="m", user_id="bob", timestamp=at(3)),
                    dict(session_id="s-k", turn=2, cost_usd=2.0, model="m ", user_id="bob ", timestamp=at(4)),
                ],
            )
        if backend == "mariadb":
            assert mariadb_collations(engine) == {"utf8mb4_bin"}

        upgrade_schema(engine, EXACT_KEYS_REVISION)
        assert row_counts(engine, ("session_metadata", "usage_stats")) == {"session_metadata": 2, "usage_stats": 2}
        if backend == "mariadb":
            assert mariadb_collations(engine) == {"utf8mb4_nopad_bin"}
        upgrade_schema(engine)
        with SessionManager(empty_db_target, tmp_path / "sessions", auto_upgrade=False) as manager:
            padded = manager.open_session("main", "k ", user_id="u")
            assert padded.created and padded.session_id not in ("s-k", "s-k-space")
            assert manager.open_session("main", "k", user_id="u").session_id == "s-k"
            overview = manager.cost_overview()
            assert [(u.user_id, u.total_cost_usd) for u in overview.by_user] == [("bob ", 2.0), ("bob", 1.0)]
            assert [(m.model, m.total_cost_usd) for m in overview.by_model] == [("m ", 2.0), ("m", 1.0)]

        downgrade_schema(engine, before)
        states = open_session_ids(engine)
        assert states["s-k-space"] == (True, "done") and states[padded.session_id] == (False, None)
        if backend == "mariadb":
            # Padded alike again: the older of the two open sessions is closed, naming the one kept.
            assert states["s-k"][0] and padded.session_id in states["s-k"][1]
            assert mariadb_collations(engine) == {"utf8mb4_bin"}
        else:
            assert states["s-k"] == (False, None)
        assert row_counts(engine, OUR_DATA_TABLES)["session_metadata"] == 3

        upgrade_schema(engine)
        assert schema_drift(engine) == []
    assert schema_differences(empty_db_target) == []
