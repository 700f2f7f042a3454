"""SQLite connection settings, thread sharing and error mapping (schema versions: test_schema_versions.py)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from starpod_session import (
    Channel,
    SessionManager,
    StarpodSessionError,
    StorageError,
)
from starpod_session.engine import create_storage_engine, to_url


def sqlite_pragmas(path, **options) -> dict[str, object]:
    engine = create_storage_engine(to_url(path), **options)
    try:
        with engine.connect() as connection:
            return {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()


def test_sqlite_connections_enforce_foreign_keys_use_wal_and_wait_when_busy(tmp_path):
    pragmas = sqlite_pragmas(tmp_path / "s.db")
    assert pragmas["foreign_keys"] == 1
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["busy_timeout"] >= 1000
    assert pragmas["synchronous"] == 1  # NORMAL


def test_sqlite_synchronous_full_can_be_chosen(tmp_path):
    assert sqlite_pragmas(tmp_path / "s.db", sqlite_synchronous="full")["synchronous"] == 2


def test_a_new_file_and_its_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "sessions.db"
    with SessionManager(path) as manager:
        manager.create_session(Channel.MAIN, "k")
    assert path.exists()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_manager_is_shared_by_many_threads(manager):
    session_id = manager.create_session(Channel.MAIN, "shared")
    threads, per_thread = 8, 40
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        start.wait()
        try:
            for index in range(per_thread):
                manager.save_message(session_id, "user", f"{number}:{index}")
                manager.touch_session(session_id)
        except BaseException as error:  # reported below, not swallowed
            failures.append(error)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == []
    contents = [message.content for message in manager.get_messages(session_id)]
    assert len(contents) == threads * per_thread
    for number in range(threads):
        mine = [int(c.split(":")[1]) for c in contents if c.startswith(f"{number}:")]
        assert mine == list(range(per_thread))
    assert manager.get_session(session_id).message_count == threads * per_thread


def test_a_file_that_is_not_a_database_raises_storage_error(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a sqlite database, just text" * 200)
    with pytest.raises(StorageError) as raised:
        SessionManager(path)
    assert isinstance(raised.value, StarpodSessionError)
    assert raised.value.__cause__ is not None
    assert path.read_bytes().startswith(b"this is not a sqlite database")


def test_memory_databases_are_refused(tmp_path):
    from starpod_session import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        SessionManager(":memory:")
    assert raised.value.field == "db_path"
