"""SQLite's search index takes messages in batches (migration 0011): none is ever lost or indexed twice.

The insert trigger leaves a message waiting while its id is less than
``INDEX_BATCH`` above the largest indexed id; the waiting messages are those
above that id. FTS5's ``integrity-check`` with rank 1 compares the index with
the content of ``session_messages`` and fails on any difference (a message
missing, indexed twice, or indexed with other content): run once the waiting
messages are indexed too, it proves the batches lose and double nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, event

from starpod_session import Channel, SessionManager
from starpod_session._common.search_query import parse_query
from starpod_session.backends.sqlite import fts5 as _fts5
from starpod_session.storage.repositories._waiting import (
    FTS_TOKENIZER,
    WAITING_FTS,
    _varints,
    copy_waiting,
    waiting_scores,
)
from starpod_session.storage.repositories.search import INDEX_BATCH

from ..helpers import downgrade_schema, raw_engine

FTS = "session_messages_fts"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def manager(path: Path) -> Iterator[SessionManager]:
    with SessionManager(path) as manager:
        yield manager


@pytest.fixture
def raw(path: Path, manager: SessionManager) -> Iterator[sqlite3.Connection]:
    """Another program's connection to the file (autocommit)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("PRAGMA foreign_keys = ON")
        yield connection


def indexed_up_to(raw: sqlite3.Connection) -> int:
    return raw.execute(f"SELECT coalesce(max(id), 0) FROM {FTS}_docsize").fetchone()[0]


def waiting(raw: sqlite3.Connection) -> int:
    return raw.execute(f"SELECT count(*) FROM session_messages WHERE id > {indexed_up_to(raw)}").fetchone()[0]


def assert_index_exact(raw: sqlite3.Connection) -> None:
    """Every message at or below the largest indexed id is indexed with its content, none above it.

    FTS5's check compares the whole content table, so it reports the waiting messages as
    missing: it runs on a copy, after indexing them there as a search would.
    """
    up_to = indexed_up_to(raw)
    assert (
        raw.execute(f"SELECT count(*) FROM {FTS}_docsize").fetchone()[0]
        == (raw.execute("SELECT count(*) FROM session_messages WHERE id <= ?", (up_to,)).fetchone()[0])
    )
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as copy:
        raw.backup(copy)
        copy.execute(f"INSERT INTO {FTS}(rowid, content) SELECT id, content FROM session_messages WHERE id > {up_to}")
        copy.execute(f"INSERT INTO {FTS}({FTS}, rank) VALUES ('integrity-check', 1)")  # raises if not


def test_messages_wait_for_their_batch_and_a_search_indexes_them(manager, raw):
    session_id = manager.create_session(Channel.MAIN, "k")
    ids = [manager.save_message(session_id, "user", f"apple n{n}") for n in range(INDEX_BATCH + 8)]
    # The insert of the 32nd message indexed the first 32 in one go; 8 wait.
    assert indexed_up_to(raw) == ids[INDEX_BATCH - 1]
    assert waiting(raw) == 8
    assert_index_exact(raw)
    assert len(manager.search_messages("apple", limit=100)) == len(ids)
    assert waiting(raw) == 0
    assert_index_exact(raw)
    # Nothing waits: the search writes nothing (its read finds nothing to index).
    assert len(manager.search_messages("apple", limit=100)) == len(ids)


def test_close_indexes_the_waiting_messages(path, manager, raw):
    session_id = manager.create_session(Channel.MAIN, "k")
    for n in range(5):
        manager.save_message(session_id, "user", f"pear n{n}")
    assert waiting(raw) == 5
    manager.close()
    assert waiting(raw) == 0
    assert_index_exact(raw)
    manager.close()  # closing again does nothing


def test_a_second_manager_finds_what_the_first_saved(path, manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    message_id = manager.save_message(session_id, "user", "quince jam")
    with SessionManager(path) as other:
        assert [h.message_id for h in other.search_messages("quince")] == [message_id]


def test_another_programs_inserts_deletes_and_updates_keep_the_index_exact(manager, raw):
    session_id = manager.create_session(Channel.MAIN, "k")
    ids = [manager.save_message(session_id, "user", f"melon n{n}") for n in range(INDEX_BATCH + 3)]
    indexed, waiting_id = ids[0], ids[-1]
    assert indexed <= indexed_up_to(raw) < waiting_id

    def insert(content: str, message_id: int | None = None) -> None:
        raw.execute(
            "INSERT INTO session_messages (id, session_id, role, content, timestamp) "
            "VALUES (?, ?, 'user', ?, '2026-01-01T00:00:00.000000+00:00')",
            (message_id, session_id, content),
        )

    # Rows another program inserts, one of them below the largest indexed id (a chosen id).
    raw.execute("DELETE FROM session_messages WHERE id = ?", (ids[1],))  # an indexed message
    assert_index_exact(raw)
    insert("melon restored", ids[1])  # below the largest indexed id: indexed at once, with the waiting ones
    assert waiting(raw) == 0
    assert_index_exact(raw)
    insert("melon waiting")
    assert waiting(raw) == 1
    # Deleting and rewriting waiting and indexed messages.
    raw.execute("DELETE FROM session_messages WHERE content = 'melon waiting'")
    insert("melon second")
    raw.execute("UPDATE session_messages SET content = 'melon rewritten first' WHERE id = ?", (indexed,))
    raw.execute("UPDATE session_messages SET content = 'melon rewritten waiting' WHERE content = 'melon second'")
    assert waiting(raw) == 1
    assert_index_exact(raw)
    found = {h.snippet for h in manager.search_messages("rewritten", limit=100)}
    assert found == {"melon «rewritten» first", "melon «rewritten» waiting"}
    assert manager.search_messages('"melon second"') == []
    assert manager.search_messages('"melon waiting"') == []
    assert len(manager.search_messages("melon", limit=100)) == len(ids) + 1
    assert_index_exact(raw)
    manager.close_session(session_id, "done")
    manager.delete_session(session_id)
    assert manager.search_messages("melon") == []
    assert_index_exact(raw)


def test_going_down_to_0010_indexes_the_waiting_messages_and_restores_its_triggers(path, manager, raw):
    session_id = manager.create_session(Channel.MAIN, "k")
    for n in range(3):
        manager.save_message(session_id, "user", f"grape n{n}")
    assert waiting(raw) == 3
    manager.close()
    raw.execute(
        "INSERT INTO session_messages (session_id, role, content, timestamp) "
        "VALUES (?, 'user', 'grape late', '2026-01-01T00:00:00.000000+00:00')",
        (session_id,),
    )
    assert waiting(raw) == 1
    with raw_engine(path) as engine:
        downgrade_schema(engine, "0010")
    assert waiting(raw) == 0
    insert_trigger = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'session_messages_fts_insert'").fetchone()
    assert "WHEN" not in insert_trigger[0]
    raw.execute(
        "INSERT INTO session_messages (session_id, role, content, timestamp) "
        "VALUES (?, 'user', 'grape immediate', '2026-01-01T00:00:00.000000+00:00')",
        (session_id,),
    )
    assert waiting(raw) == 0  # indexed by 0008's trigger at once
    assert_index_exact(raw)
    with SessionManager(path) as again:  # up to head again
        assert len(again.search_messages("grape", limit=100)) == 5
    assert_index_exact(raw)


def test_finding_and_indexing_the_waiting_messages_reads_only_them(manager, raw):
    session_id = manager.create_session(Channel.MAIN, "k")
    for n in range(INDEX_BATCH + 3):
        manager.save_message(session_id, "user", f"lime n{n}")
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        manager.search_messages("lime")
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    waiting_work = [(s, p) for s, p in statements if f"{FTS}_docsize" in s]
    assert [s.split()[0] for s, _ in waiting_work] == ["SELECT", "INSERT"]  # the look-up, then the indexing
    for statement, parameters in waiting_work:
        plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())]
        assert "SEARCH session_messages USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan
        assert not [step for step in plan if step.startswith("SCAN") and step != "SCAN CONSTANT ROW"], plan


@pytest.mark.parametrize("query", ["apple", "apple pie", '"apple pie"', "pie*", 'app* "crumble with"'])
def test_a_readers_score_of_a_waiting_message_is_the_score_the_index_gives(path, manager, query):
    # A reader that may not write scores the waiting messages itself (_waiting.py); given
    # messages the index also holds, its scores must be FTS5's bm25() of them.
    session_id = manager.create_session(Channel.MAIN, "k")
    texts = [
        "apple pie",
        "apple apple pie with crumble",
        "pie crumble with apple on top of a long sentence about pies",
        "apples and pears",
        "crumble with apple pie apple pie",
        "nothing of the sort",
    ]
    ids = [manager.save_message(session_id, "user", text) for text in texts * 3]
    manager.search_messages("apple")  # indexes every message
    parsed = parse_query(query)
    phrases = [_fts5((part,)) for part in parsed.indexed]
    with raw_engine(path) as engine, engine.connect() as connection:
        expected = dict(
            connection.execute(
                sa.text(f"SELECT rowid, -bm25({FTS}) FROM {FTS} WHERE {FTS} MATCH :q"), {"q": _fts5(parsed.indexed)}
            ).all()
        )
        assert expected
        copy_waiting(connection)  # nothing waits: an empty copy
        connection.execute(
            sa.text(f"INSERT INTO temp.{WAITING_FTS}(rowid, content) SELECT id, content FROM session_messages")
        )
        scores = waiting_scores(connection, phrases, expected)
    assert set(scores) == set(expected) <= set(ids)
    for message_id, score in expected.items():
        assert scores[message_id] == pytest.approx(score, rel=1e-12)


def test_sqlite_varints_read_as_sqlite_writes_them():
    assert _varints(bytes([0x05, 0x81, 0x00, 0x7F])) == [5, 128, 127]
    assert _varints(bytes([0xFF] * 8 + [0xFF])) == [2**64 - 1]
    assert _varints(bytes([0x81] * 8 + [0x01, 0x00])) == [(sum(1 << (7 * k) for k in range(1, 9)) << 1) | 1, 0]


def test_the_readers_copy_splits_words_as_the_index_does(raw):
    (created,) = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (FTS,)).fetchone()
    assert f"tokenize='{FTS_TOKENIZER}'" in created
