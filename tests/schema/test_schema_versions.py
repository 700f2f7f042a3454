"""Opening a database checks its schema version: upgrade once under races, or refuse without writing."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from starpod_session import Channel, SchemaOutdated, SchemaTooNew, SessionManager
from starpod_session.backends import mariadb as schema
from starpod_session.backends.engine import create_storage_engine, to_url
from starpod_session.storage.models import Base
from starpod_session.storage.schema import BASELINE_REVISION, current_revision, head_revision, upgrade_schema

from ..helpers import command_target, raw_connection, raw_engine, snapshot, stamps

OPENERS = 4
FUTURE_REVISION = "ffff_from_the_future"


def at_revision(target: str, revision: str) -> None:
    with raw_engine(target) as engine:
        upgrade_schema(engine, revision)


# -- racing openers ----------------------------------------------------------------


def open_at_the_barrier(target: str, barrier: multiprocessing.synchronize.Barrier, outcomes) -> None:
    """Child process: wait for every sibling, then open the database (which migrates it)."""
    barrier.wait()
    try:
        SessionManager(target).close()
        outcomes.put("ok")
    except BaseException as error:  # reported to the parent
        outcomes.put(f"{type(error).__name__}: {error}")


def check_migrated_once(target: str, tmp_path: Path) -> None:
    assert stamps(target) == [head_revision()]
    with SessionManager(target, auto_upgrade=False) as manager:
        session_id = manager.create_session(Channel.MAIN, "after the race")
        assert manager.get_session(session_id) is not None


def test_processes_opening_a_new_database_at_once_all_succeed(empty_db_target, tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(OPENERS)
    outcomes = context.Queue()
    workers = [
        context.Process(target=open_at_the_barrier, args=(empty_db_target, barrier, outcomes)) for _ in range(OPENERS)
    ]
    for worker in workers:
        worker.start()
    results = [outcomes.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join()
    assert results == ["ok"] * OPENERS
    assert [worker.exitcode for worker in workers] == [0] * OPENERS
    check_migrated_once(empty_db_target, tmp_path)


def test_threads_opening_a_new_database_at_once_all_succeed(empty_db_target, tmp_path):
    barrier = threading.Barrier(OPENERS)
    failures: list[BaseException] = []

    def opener() -> None:
        barrier.wait()
        try:
            SessionManager(empty_db_target).close()
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    check_migrated_once(empty_db_target, tmp_path)


@pytest.mark.parametrize("engine_kind", ["storage engine", "plain engine"])
def test_a_sqlite_upgrade_holds_the_write_lock_from_its_first_statement(tmp_path, engine_kind):
    path = tmp_path / "locked.db"
    sqlite3.connect(path).close()
    engine = (
        create_storage_engine(to_url(path))
        if engine_kind == "storage engine"
        else sa.create_engine(f"sqlite:///{path}")
    )
    other_writer_got_in: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def try_to_write_alongside(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            return
        competitor = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            competitor.execute("BEGIN IMMEDIATE")
            competitor.execute("ROLLBACK")
            other_writer_got_in.append(statement)
        except sqlite3.OperationalError as error:
            assert "locked" in str(error)
        finally:
            competitor.close()

    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    assert other_writer_got_in == []
    assert stamps(str(path)) == [head_revision()]


# -- refusing without writing -----------------------------------------------------


def test_an_empty_database_is_outdated_when_auto_upgrade_is_off(empty_db_target):
    if to_url(empty_db_target).get_backend_name() == "sqlite":
        sqlite3.connect(empty_db_target).close()
    before = snapshot(empty_db_target)
    with pytest.raises(SchemaOutdated) as raised:
        SessionManager(empty_db_target, auto_upgrade=False)
    assert f"Run: starpod-session db upgrade {command_target(empty_db_target)}" in str(raised.value)
    assert snapshot(empty_db_target) == before


def test_a_database_behind_the_code_is_outdated_and_left_as_it_is(empty_db_target):
    at_revision(empty_db_target, BASELINE_REVISION)
    before = snapshot(empty_db_target)
    with pytest.raises(SchemaOutdated) as raised:
        SessionManager(empty_db_target, auto_upgrade=False)
    message = str(raised.value)
    assert f"Run: starpod-session db upgrade {command_target(empty_db_target)}" in message
    assert BASELINE_REVISION in message and head_revision() in message
    assert snapshot(empty_db_target) == before
    assert stamps(empty_db_target) == [BASELINE_REVISION]


def test_a_rust_era_file_is_outdated_and_not_even_stamped_when_auto_upgrade_is_off(writable_copy):
    path = writable_copy("rust-core-db-0.3.sqlite")
    before = snapshot(str(path))
    with pytest.raises(SchemaOutdated) as raised:
        SessionManager(path, auto_upgrade=False)
    assert f"starpod-session db upgrade {path}" in str(raised.value)
    assert snapshot(str(path)) == before


@pytest.mark.parametrize("auto_upgrade", [True, False])
def test_a_database_ahead_of_the_code_is_refused_untouched(db_target, auto_upgrade):
    with SessionManager(db_target) as manager:
        manager.create_session(Channel.MAIN, "written by the newer release")
    with raw_connection(db_target, begin=True) as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE_REVISION})
    before = snapshot(db_target)
    with pytest.raises(SchemaTooNew) as raised:
        SessionManager(db_target, auto_upgrade=auto_upgrade)
    assert FUTURE_REVISION in str(raised.value)
    assert "Upgrade the package" in str(raised.value)
    assert snapshot(db_target) == before


def test_reopening_an_up_to_date_database_keeps_its_rows(db_target):
    with SessionManager(db_target) as first:
        session_id = first.create_session(Channel.TELEGRAM, "k")
        first.save_message(session_id, "user", "kept")
    with SessionManager(db_target, auto_upgrade=False) as second:
        assert [m.content for m in second.get_messages(session_id)] == ["kept"]


def test_a_process_waiting_for_the_migration_lock_finds_the_finished_stamp(backend, empty_db_target, monkeypatch):
    """MariaDB's named lock outlives transactions: it may only go once the migration is committed."""
    if backend != "mariadb":
        pytest.skip(
            "elsewhere the migration lock is the transaction itself (SQLite's write lock, PostgreSQL's xact lock)"
        )
    seen_at_release: list[str | None] = []
    unlock = schema._unlock
    with raw_engine(empty_db_target) as engine, raw_engine(empty_db_target) as waiting:

        def observed_unlock(connection: sa.Connection) -> None:
            with waiting.connect() as other:  # what a process that gets the lock next would read
                seen_at_release.append(current_revision(other))
            unlock(connection)

        monkeypatch.setattr(schema, "_unlock", observed_unlock)
        upgrade_schema(engine)
    assert seen_at_release == [head_revision()]


# -- tables created by another tool ----------------------------------------------------------------


@pytest.mark.parametrize("auto_upgrade", [True, False])
def test_our_tables_without_a_stamp_are_refused_with_what_to_do_and_left_as_they_are(empty_db_target, auto_upgrade):
    with raw_engine(empty_db_target) as engine, warnings.catch_warnings():
        # PostgreSQL: open_slot is STORED, as our migration makes it
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        Base.metadata.create_all(engine)  # another tool: no alembic_version
    before = snapshot(empty_db_target)
    with pytest.raises(SchemaOutdated) as raised:
        SessionManager(empty_db_target, auto_upgrade=auto_upgrade)
    message = str(raised.value)
    assert "no alembic_version" in message and "session_metadata" in message
    assert f"alembic -x db={command_target(empty_db_target)} stamp head" in message
    assert snapshot(empty_db_target) == before
