"""copy_database: every table, every pair of backends, ids and timestamps exact, resumable, verified."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from starpod_session import (
    Channel,
    InvalidInput,
    SchemaTooNew,
    SessionManager,
    StorageError,
    TargetNotEmpty,
    copy_database,
)
from starpod_session.backends.engine import create_storage_engine, to_url
from starpod_session.storage.repositories.transfer import MARKER_TABLE

from ..helpers import RUST_FILES, raw_rows
from .conftest import fill, fills_up_after, typed_rows


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def table_names(target: str) -> set[str]:
    engine = create_storage_engine(to_url(target))
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_every_row_moves_between_every_pair_of_backends(source, target, fresh_database):
    src, dst = fresh_database(source, "src"), fresh_database(target, "dst")
    fill(src)
    before = typed_rows(src)
    file_before = digest(src) if source == "sqlite" else None

    report = copy_database(src, dst)

    assert typed_rows(dst) == before  # ids, timestamps to the microsecond, flags, costs, the rollup
    assert all(check.ok for check in report.checks)
    assert dict(report.rows)["session_messages"] == len(before["session_messages"])
    assert MARKER_TABLE not in table_names(dst)  # the bookkeeping went with the verification
    if file_before is not None:
        assert digest(src) == file_before  # the source is never written
    with SessionManager(dst) as manager:
        hits = manager.search_messages("turn")  # the target's own search index holds every message
        assert len({hit.session_id for hit in hits}) == 4
        session = manager.create_session(Channel.MAIN, "after the copy")
        new_id = manager.save_message(session, "user", "new")
    # The id counters moved past the source's, deleted rows' ids included.
    assert new_id > max(row[0] for row in before["session_messages"]) + 1


@pytest.mark.parametrize("fixture", RUST_FILES)
def test_a_rust_era_file_is_upgraded_on_the_way_and_never_written(fixture, target, fresh_database, writable_copy):
    src = writable_copy(fixture, "core.db")
    adopted = writable_copy(fixture, "adopted.db")
    SessionManager(adopted).close()  # what adopting the file in place gives
    untouched = digest(src)
    dst = fresh_database(target, "dst")

    copy_database(src, dst)

    assert digest(src) == untouched
    assert "alembic_version" not in {row[0] for row in sqlite3.connect(src).execute("SELECT name FROM sqlite_master")}
    assert typed_rows(dst) == typed_rows(str(adopted))


NANOSECONDS = "2026-03-14T09:00:04.123456789+00:00"


@pytest.mark.parametrize("fixture", RUST_FILES)
def test_sqlite_to_sqlite_keeps_the_stored_text_byte_for_byte(fixture, tmp_path, writable_copy):
    src = writable_copy(fixture, "core.db")
    with sqlite3.connect(src) as raw:  # a message as the Rust crate writes them: nanoseconds
        raw.execute(
            "INSERT INTO session_messages (session_id, role, content, timestamp) "
            "SELECT id, 'user', 'late', ? FROM session_metadata LIMIT 1",
            (NANOSECONDS,),
        )
    raw.close()
    adopted = tmp_path / "adopted.db"
    shutil.copyfile(src, adopted)
    SessionManager(adopted).close()
    dst = tmp_path / "dst.db"

    copy_database(src, dst)

    for table in ("session_metadata", "session_messages", "usage_stats", "compaction_log", "tool_calls"):
        names = [row[1] for row in sqlite3.connect(dst).execute(f"PRAGMA table_info({table})")]
        columns = ", ".join(name for name in names if name != "open_slot")
        assert [tuple(r) for r in raw_rows(dst, table, columns)] == [
            tuple(r) for r in raw_rows(adopted, table, columns)
        ]
    assert NANOSECONDS in {row[0] for row in raw_rows(dst, "session_messages", "timestamp")}


KILLED_COPY = textwrap.dedent(
    """
    import os, signal, sys
    from starpod_session import copy_database
    from starpod_session.storage.repositories import transfer

    src, dst, where = sys.argv[1:4]
    batches = 0
    original = transfer.write_marker if where == "inside" else None

    def kill_inside(connection, table, state):
        if table == "session_messages" and state["rows"] >= 30:
            os.kill(os.getpid(), signal.SIGKILL)  # the batch's rows are written, not committed
        original(connection, table, state)

    def kill_after(progress):
        if progress.table == "session_messages" and progress.done >= 30:
            os.kill(os.getpid(), signal.SIGKILL)  # right after a batch's commit

    if where == "inside":
        transfer.write_marker = kill_inside
        copy_database(src, dst, batch_size=7)
    else:
        copy_database(src, dst, batch_size=7, progress=kill_after)
    """
)


@pytest.mark.parametrize("where", ["inside", "after"])
def test_a_killed_copy_continues_where_it_stopped(target, where, fresh_database):
    src, dst = fresh_database("sqlite", "src"), fresh_database(target, "dst")
    fill(src, sessions=3, messages=20)
    killed = subprocess.run([sys.executable, "-c", KILLED_COPY, src, dst, where], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert MARKER_TABLE in table_names(dst)  # unfinished: the bookkeeping says how far it got

    report = copy_database(src, dst, batch_size=7)

    assert report.resumed
    assert typed_rows(dst) == typed_rows(src)  # nothing duplicated, nothing lost


def test_a_target_holding_other_rows_is_refused_and_left_alone(target, fresh_database):
    src, dst = fresh_database("sqlite", "src"), fresh_database(target, "dst")
    fill(src, sessions=1)
    with SessionManager(dst) as manager:
        manager.create_session(Channel.MAIN, "someone else's")
    before = typed_rows(dst)

    with pytest.raises(TargetNotEmpty, match="already holds rows"):
        copy_database(src, dst)

    assert typed_rows(dst) == before


def test_an_unfinished_copy_from_another_source_is_not_continued(fresh_database, tmp_path):
    first, second, dst = (fresh_database("sqlite", name) for name in ("first", "second", "dst"))
    fill(first, sessions=3, messages=20)
    fill(second, sessions=1)
    killed = subprocess.run([sys.executable, "-c", KILLED_COPY, first, dst, "after"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL

    with pytest.raises(TargetNotEmpty, match="unfinished transfer"):
        copy_database(second, dst)


def test_the_source_itself_is_refused(tmp_path):
    src = str(tmp_path / "src.db")
    fill(src, sessions=1)
    with pytest.raises(InvalidInput, match="source itself"):
        copy_database(src, src)


def test_a_source_that_is_not_ours_is_refused_and_untouched(tmp_path, fresh_database):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE notes (x)")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database at all\n" * 100)
    for source in (other, text_file):
        before = digest(source)
        with pytest.raises(InvalidInput, match="not a"):
            copy_database(source, tmp_path / "dst.db")
        assert digest(source) == before
    with pytest.raises(InvalidInput, match="no database file"):
        copy_database(tmp_path / "missing.db", tmp_path / "dst.db")


def test_a_target_of_a_newer_schema_is_refused(target, fresh_database):
    src, dst = fresh_database("sqlite", "src"), fresh_database(target, "dst")
    fill(src, sessions=1)
    SessionManager(dst).close()
    engine = create_storage_engine(to_url(dst))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(SchemaTooNew):
        copy_database(src, dst)


def test_an_unreachable_server_is_named_without_its_password(tmp_path):
    src = str(tmp_path / "src.db")
    fill(src, sessions=1)
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError) as raised:
        copy_database(src, "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)


def test_a_full_target_keeps_what_it_wrote_and_the_same_call_continues(tmp_path, monkeypatch):
    """The disk filling up, simulated with SQLite's page limit (``max_page_count``) on the target."""
    src, dst = str(tmp_path / "src.db"), str(tmp_path / "dst.db")
    fill(src, sessions=3, messages=200)
    fills_up_after(monkeypatch, dst)
    with pytest.raises(StorageError, match="is full"):
        copy_database(src, dst, batch_size=50)
    kept = sqlite3.connect(dst).execute("SELECT count(*) FROM session_messages").fetchone()[0]
    assert kept > 0

    monkeypatch.undo()  # space freed
    copy_database(src, dst, batch_size=50)
    assert typed_rows(dst) == typed_rows(src)


def test_a_difference_at_the_end_is_reported_and_the_bookkeeping_kept(tmp_path, monkeypatch):
    from starpod_session import VerificationFailed
    from starpod_session.features import transfer

    src, dst = str(tmp_path / "src.db"), str(tmp_path / "dst.db")
    fill(src, sessions=2)
    real_insert = transfer.storage.insert_rows

    def losing_a_message(connection, plan, rows, **options):
        real_insert(connection, plan, rows[1:] if plan.name == "session_messages" else rows, **options)

    monkeypatch.setattr(transfer.storage, "insert_rows", losing_a_message)
    with pytest.raises(VerificationFailed, match="session_messages: rows: 16 in the source, 15 in the target"):
        copy_database(src, dst)
    assert MARKER_TABLE in table_names(dst)


def test_a_server_source_behind_this_release_is_refused_unwritten(source, fresh_database, tmp_path):
    from starpod_session import SchemaOutdated

    from ..helpers import downgrade_schema

    if source == "sqlite":
        pytest.skip("a SQLite source behind is upgraded on a temporary copy (the Rust-era tests)")
    src = fresh_database(source, "src")
    fill(src, sessions=1)
    engine = create_storage_engine(to_url(src))
    downgrade_schema(engine, "0010")
    engine.dispose()

    with pytest.raises(SchemaOutdated, match="upgrade it first"):
        copy_database(src, tmp_path / "dst.db")
    with create_storage_engine(to_url(src)).connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0010"


def test_the_source_is_read_through_a_connection_that_cannot_write(source, fresh_database):
    from starpod_session.backends.engine import create_read_only_engine

    src = fresh_database(source, "src")
    fill(src, sessions=1)
    engine = create_read_only_engine(to_url(src))
    try:
        with pytest.raises(sa.exc.DBAPIError, match=r"(?i)read.only|readonly"), engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM session_metadata"))
    finally:
        engine.dispose()
    assert len(typed_rows(src)["session_metadata"]) == 1


def test_bad_arguments_are_refused_before_anything_is_opened(tmp_path):
    from starpod_session import dump_database, restore_database

    src = str(tmp_path / "src.db")
    fill(src, sessions=1)
    for call in (
        lambda: copy_database(src, tmp_path / "dst.db", progress=3),
        lambda: copy_database(src, tmp_path / "dst.db", batch_size=0),
        lambda: copy_database(src, 42),
        lambda: dump_database(src, tmp_path / "dump.jsonl", progress="loud"),
        lambda: restore_database(tmp_path / "dump.jsonl", tmp_path / "dst.db", progress=[]),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith("src.db")) == []
