"""SQLite connection settings, thread sharing and error mapping (schema versions: schema/test_schema_versions.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

import starpod_session
from starpod_session import (
    Channel,
    InvalidInput,
    SessionManager,
    StarpodSessionError,
    StorageError,
    UsageRecord,
)
from starpod_session.backends.engine import DEFAULT_SQLITE_CACHE_MIB
from starpod_session.storage.repositories.search import INDEX_BATCH

from ..helpers import raw_engine


def sqlite_pragmas(path, **options) -> dict[str, object]:
    with raw_engine(path, **options) as engine, engine.connect() as connection:
        return {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("foreign_keys", "journal_mode", "busy_timeout", "synchronous")
        }


def test_sqlite_connections_enforce_foreign_keys_use_wal_and_wait_when_busy(tmp_path):
    pragmas = sqlite_pragmas(tmp_path / "s.db")
    assert pragmas["foreign_keys"] == 1
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["busy_timeout"] >= 1000
    assert pragmas["synchronous"] == 1  # NORMAL


def test_sqlite_synchronous_full_can_be_chosen(tmp_path):
    assert sqlite_pragmas(tmp_path / "s.db", sqlite_synchronous="full")["synchronous"] == 2


def manager_cache_sizes(manager: SessionManager) -> set[int]:
    """``PRAGMA cache_size`` of every connection the manager's calls ran on (held and pooled)."""
    seen: set[int] = set()

    def note(_conn, cursor, *_args):
        seen.add(cursor.connection.execute("PRAGMA cache_size").fetchone()[0])

    sa.event.listen(manager._engine, "before_cursor_execute", note)
    try:
        session_id = manager.create_session(Channel.MAIN, "k")  # prepared work, on a held connection
        manager.cost_overview()  # work on a Connection, from the pool
        manager.get_messages(session_id)
    finally:
        sa.event.remove(manager._engine, "before_cursor_execute", note)
    return seen


def test_sqlite_connections_keep_eight_mib_of_pages_by_default(tmp_path):
    # SQLite's own 2 MiB holds too few of a large file's index pages: a look-up in a
    # million rows then re-reads them from the file on each call.
    assert DEFAULT_SQLITE_CACHE_MIB == 8
    with SessionManager(tmp_path / "s.db") as manager:
        assert manager_cache_sizes(manager) == {-8 * 1024}  # negative: KiB


@pytest.mark.parametrize("mib", [1, 64])
def test_the_page_cache_can_be_sized(tmp_path, mib):
    with SessionManager(tmp_path / "s.db", sqlite_cache_mib=mib) as manager:
        assert manager_cache_sizes(manager) == {-mib * 1024}


@pytest.mark.parametrize("mib", [0, -1, True, 1.5, "8M", None, 1 << 17])
def test_a_page_cache_size_that_is_not_a_count_of_mib_is_invalid_input(tmp_path, mib):
    with pytest.raises(InvalidInput, match="sqlite_cache_mib"):
        SessionManager(tmp_path / "s.db", sqlite_cache_mib=mib)
    assert not (tmp_path / "s.db").exists()


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


# -- what the file system refuses ------------------------------------------------

NOBODY = 65534

#: Run as root, the child warms every import on a scratch database, then becomes
#: ``nobody`` (the interpreter itself lives under /root, which nobody may not read).
_AS_NOBODY_PRELUDE = """
import json, os, sqlite3, sys, tempfile
from starpod_session import Channel, SessionManager, StarpodSessionError, UsageRecord
with tempfile.TemporaryDirectory() as scratch:
    with SessionManager(os.path.join(scratch, "warm.db"), os.path.join(scratch, "t")) as warm:
        sid = warm.create_session(Channel.MAIN, "k")
        warm.save_message(sid, "user", "hi"); warm.get_messages(sid); warm.list_sessions(1)
        warm.record_usage(sid, UsageRecord(), 1); warm.cost_overview(); warm.session_usage(sid)
    # The command line too: nobody may not be able to read the modules it loads lazily.
    import contextlib, io
    from starpod_session.cli import main as cli_main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for argv in (["sessions", "list"], ["sessions", "show", sid], ["costs"], ["sessions", "archive", sid]):
            for json_flag in ([], ["--json"]):
                cli_main([*argv, *json_flag, "--db", os.path.join(scratch, "warm.db")])
os.setgid({uid}); os.setuid({uid})
"""


def run_as_nobody(script: str, *args: str) -> dict:
    """Run ``script`` (after the prelude) as ``nobody``; it prints one JSON object, returned here."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a child as nobody whose writes the file system refuses")
    package = Path(starpod_session.__file__).parent
    for folder in (package, *package.parents):
        if not folder.stat().st_mode & 0o001:
            pytest.skip(f"nobody cannot reach the package under test: {folder} is closed to others")
    done = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY_PRELUDE.format(uid=NOBODY) + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def shared_folder():
    """A folder under /tmp that ``nobody`` can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="starpod-ro-"))
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


_READ_EVERYTHING = """
path = sys.argv[1]
result = {}
try:
    open(path, "r+b").close()
    result["plain_write_open"] = "allowed"
except PermissionError:
    result["plain_write_open"] = "refused"
try:
    manager = SessionManager(path)
    (meta,) = manager.list_sessions(10)
    result["listed"] = meta.title
    result["shown"] = manager.get_session(meta.id).user_id
    result["messages"] = [m.content for m in manager.get_messages(meta.id)]
    result["found"] = [hit.snippet for hit in manager.search_messages("hello")]
    result["cost"] = manager.cost_overview().total_cost_usd
    result["session_cost"] = manager.session_usage(meta.id).total_cost_usd
    try:
        manager.save_message(meta.id, "user", "more")
        result["write"] = "allowed"
    except StarpodSessionError as error:
        result["write"] = f"{type(error).__name__}: {error}"
    manager.close()
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
print(json.dumps(result))
"""


def _database_with_one_session(path: Path) -> None:
    with SessionManager(path) as manager:
        session_id = manager.create_session(Channel.MAIN, "k", user_id="alice")
        manager.save_message(session_id, "user", "Hello")
        manager.record_usage(session_id, UsageRecord(cost_usd=0.25), 1)
    path.chmod(0o644)


@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_a_read_only_database_can_be_read_and_a_write_says_it_is_read_only(shared_folder, read_only):
    path = shared_folder / "sessions.db"
    _database_with_one_session(path)
    if read_only == "folder":
        shared_folder.chmod(0o555)  # nobody can neither write the file nor create -wal/-shm beside it
    else:
        os.chown(shared_folder, NOBODY, NOBODY)  # nobody may create -wal/-shm, not write the file
    result = run_as_nobody(_READ_EVERYTHING, str(path))
    assert result["plain_write_open"] == "refused"  # the permission denial is real
    assert "error" not in result, result["error"]
    assert (result["listed"], result["shown"], result["messages"]) == ("Hello", "alice", ["Hello"])
    # The writer's close() indexed its waiting message (SQLite indexes in batches): a reader
    # that cannot write finds it.
    assert result["found"] == ["«Hello»"]
    assert (result["cost"], result["session_cost"]) == (0.25, 0.25)
    assert result["write"].startswith("StorageError: ") and "read-only" in result["write"]
    assert str(path) in result["write"]


_CLI_READS = """
import contextlib, io
from starpod_session.cli import main  # loaded, with what it loads lazily, before the privileges dropped

def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*argv, "--db", sys.argv[1]])
    return [status, out.getvalue(), err.getvalue()]

listed = run("sessions", "list", "--json")
session_id = json.loads(listed[1])[0]["id"] if listed[0] == 0 else "none"
print(json.dumps({
    "list": listed,
    "show": run("sessions", "show", session_id[:8], "--json"),
    "costs": run("costs", "--json"),
    "archive": run("sessions", "archive", session_id),
}))
"""


@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_the_command_line_reads_a_read_only_database_and_refuses_writes_in_one_line(shared_folder, read_only):
    path = shared_folder / "sessions.db"
    _database_with_one_session(path)
    if read_only == "folder":
        shared_folder.chmod(0o555)
    else:
        os.chown(shared_folder, NOBODY, NOBODY)
    result = run_as_nobody(_CLI_READS, str(path))
    for command in ("list", "show", "costs"):
        status, _out, err = result[command]
        assert (status, err) == (0, ""), command
    assert [meta["title"] for meta in json.loads(result["list"][1])] == ["Hello"]
    assert [m["content"] for m in json.loads(result["show"][1])["messages"]] == ["Hello"]
    assert json.loads(result["costs"][1])["overview"]["total_cost_usd"] == 0.25
    status, out, err = result["archive"]
    assert status == 1 and out == "" and "read-only" in err and len(err.strip().splitlines()) == 1


def test_a_database_path_below_a_regular_file_is_invalid_input_naming_it(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    with pytest.raises(InvalidInput, match="plain") as raised:
        SessionManager(tmp_path / "plain" / "sub" / "sessions.db")
    assert raised.value.field == "db_path"


def test_a_sessions_dir_that_is_a_file_is_invalid_input_naming_it(tmp_path):
    (tmp_path / "transcripts").write_text("a file")
    with pytest.raises(InvalidInput, match="transcripts") as raised:
        SessionManager(tmp_path / "sessions.db", tmp_path / "transcripts")
    assert raised.value.field == "sessions_dir"


def test_folders_that_cannot_be_created_under_a_read_only_parent_are_storage_errors(shared_folder):
    shared_folder.chmod(0o555)
    result = run_as_nobody(
        """
        folder = sys.argv[1]
        result = {}
        for name, make in [
            ("db_path", lambda: SessionManager(os.path.join(folder, "new", "sessions.db"))),
            (
                "sessions_dir",
                lambda: SessionManager(os.path.join(tempfile.mkdtemp(), "s.db"), os.path.join(folder, "t")),
            ),
        ]:
            try:
                make().close()
                result[name] = "created"
            except Exception as error:
                result[name] = f"{type(error).__name__}: {error}"
        print(json.dumps(result))
        """,
        str(shared_folder),
    )
    assert result["db_path"].startswith("StorageError: ") and str(shared_folder / "new") in result["db_path"]
    assert result["sessions_dir"].startswith("StorageError: ") and str(shared_folder / "t") in result["sessions_dir"]


@pytest.mark.parametrize(
    ("table", "column", "read"),
    [
        ("session_metadata", "last_message_at", lambda m, sid: m.list_sessions(10)),
        ("session_metadata", "created_at", lambda m, sid: m.get_session(sid)),
        ("session_messages", "timestamp", lambda m, sid: m.get_messages(sid)),
    ],
)
def test_a_timestamp_another_program_stored_badly_is_a_storage_error_naming_where(tmp_path, table, column, read):
    path = tmp_path / "sessions.db"
    with SessionManager(path) as manager:
        session_id = manager.create_session(Channel.MAIN, "k")
        manager.save_message(session_id, "user", "hi")
    with sqlite3.connect(path) as raw:
        raw.execute(f"UPDATE {table} SET {column} = '20/03/2026 12:00'")
        (row_id,) = raw.execute(f"SELECT id FROM {table}").fetchone()
    raw.close()
    with SessionManager(path) as manager, pytest.raises(StorageError) as raised:
        read(manager, session_id)
    message = str(raised.value)
    assert table in message and repr(row_id) in message and "20/03/2026 12:00" in message


def test_closing_a_manager_used_by_many_threads_hands_back_every_sqlite_connection(tmp_path):
    # The SQLite fast path keeps driver connections checked out between calls.
    manager = SessionManager(tmp_path / "held.db")
    engine = manager._engine
    session_id = manager.create_session(Channel.MAIN, "k")
    barrier = threading.Barrier(6)

    def use() -> None:
        barrier.wait()
        for _ in range(20):
            manager.save_message(session_id, "user", "hi")
            manager.get_messages(session_id)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert engine.pool.checkedout() > 0  # held for the next calls
    manager.close()
    assert engine.pool.checkedout() == 0
    assert manager._transactions._held._idle == []


def test_an_invalidated_sqlite_connection_is_not_used_again(tmp_path):
    manager = SessionManager(tmp_path / "lost.db")
    session_id = manager.create_session(Channel.MAIN, "k")
    held = manager._transactions._held
    manager.get_messages(session_id)
    (broken,) = held._idle
    broken.invalidate()
    manager.save_message(session_id, "user", "still works")
    assert [m.content for m in manager.get_messages(session_id)] == ["still works"]
    assert broken not in held._idle
    manager.close()


_SEARCH_WHILE_A_WRITER_RUNS = """
manager = SessionManager(sys.argv[1])
result = {
    "word": [hit.snippet for hit in manager.search_messages("quince", limit=50)],
    "phrase": [hit.snippet for hit in manager.search_messages('"quince jam"', limit=50)],
    "prefix": sorted(hit.snippet for hit in manager.search_messages("quin*", limit=50)),
    "filtered": [hit.snippet for hit in manager.search_messages("quince", roles=["assistant"])],
}
pages, cursor = [], None
while True:
    page = manager.search_messages("quince", limit=2, cursor=cursor)
    if not page:
        break
    pages.append([hit.snippet for hit in page])
    cursor = page[-1].cursor
result["pages"] = pages
manager.close()
print(json.dumps(result))
"""


def test_a_reader_that_cannot_write_finds_the_messages_a_running_writer_has_not_indexed_yet(shared_folder):
    # SQLite indexes messages in batches (repositories/search.py: INDEX_BATCH); a writer
    # indexes the waiting ones before its own searches and when it closes. A reader
    # that may not write, searching while a writer runs (or after one was killed),
    # must find them all the same: phrases, prefixes, filters and pages included.
    path = shared_folder / "sessions.db"
    with SessionManager(path) as writer:
        session_id = writer.create_session(Channel.MAIN, "k")
        indexed = [writer.save_message(session_id, "user", f"plain filler {n}") for n in range(INDEX_BATCH)]
        writer.save_message(session_id, "user", "quince jam, indexed")
        writer.search_messages("filler")  # the writer indexes what waits: one indexed quince message
        writer.save_message(session_id, "user", "quince quince jam waiting")
        writer.save_message(session_id, "assistant", "quince waiting jam")
        writer.save_message(session_id, "user", "quinces waiting")
        with sqlite3.connect(path) as raw:
            waiting = raw.execute(
                "SELECT count(*) FROM session_messages WHERE id > (SELECT max(id) FROM session_messages_fts_docsize)"
            ).fetchone()[0]
        assert indexed and waiting == 3
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            name.chmod(0o644)  # the owner shares the database read-only, writer still running
        os.chown(shared_folder, NOBODY, NOBODY)
        result = run_as_nobody(_SEARCH_WHILE_A_WRITER_RUNS, str(path))
        shared_folder.chmod(0o755)
        os.chown(shared_folder, 0, 0)
        assert "error" not in result, result
        # As the writer ranks them, once it has indexed everything.
        expected = {
            query: [hit.snippet for hit in writer.search_messages(query, limit=50)]
            for query in ("quince", '"quince jam"')
        }
    # In the order a writer gives once it has indexed them too (the same words weigh alike here).
    assert result["word"] == expected["quince"] and len(result["word"]) == 3
    assert result["word"][0] == "«quince» «quince» jam waiting"  # the waiting message that says it twice
    assert result["phrase"] == expected['"quince jam"'] == ["«quince jam», indexed", "quince «quince jam» waiting"]
    assert result["prefix"] == sorted(
        ["«quince» «quince» jam waiting", "«quince» jam, indexed", "«quince» waiting jam", "«quinces» waiting"]
    )
    assert result["filtered"] == ["«quince» waiting jam"]
    assert [snippet for page in result["pages"] for snippet in page] == result["word"]
    assert [len(page) for page in result["pages"]] == [2, 1]
