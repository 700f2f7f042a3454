"""dump_database / restore_database: a portable JSON Lines file, checked before anything is restored."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from starpod_session import (
    Channel,
    DumpInvalid,
    SchemaOutdated,
    SchemaTooNew,
    SessionManager,
    StorageError,
    dump_database,
    restore_database,
)
from starpod_session.storage.schema import head_revision

from .conftest import fill, fills_up_after, typed_rows


def lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


@pytest.mark.parametrize("name", ["backup.jsonl", "backup.jsonl.gz"])
def test_a_dump_restores_into_every_backend(source, target, name, fresh_database, tmp_path):
    src, dst = fresh_database(source, "src"), fresh_database(target, "dst")
    fill(src)
    dump = tmp_path / name

    dump_database(src, dump)
    report = restore_database(dump, dst)

    assert typed_rows(dst) == typed_rows(src)
    assert all(check.ok for check in report.checks)
    with SessionManager(dst) as manager:
        assert manager.search_messages("turn")


def test_the_file_reads_without_the_library(tmp_path):
    src = str(tmp_path / "src.db")
    fill(src, sessions=1, messages=1)
    dump = tmp_path / "backup.jsonl"
    dump_database(src, dump)

    header, *rows, trailer = lines(dump)

    assert header["format"] == "starpod-session-dump"
    assert header["schema_revision"] == head_revision()
    assert {table["name"] for table in header["tables"]} >= {"session_metadata", "session_messages", "usage_stats"}
    message = next(row["row"] for row in rows if row["table"] == "session_messages")
    assert message["content"].startswith("hello world")
    assert message["timestamp"] == "2026-03-20T12:00:01.123458+00:00"  # to the microsecond
    assert trailer["end"] is True and len(trailer["sha256"]) == 64


def test_a_dump_is_one_snapshot_of_a_live_database(tmp_path):
    src = str(tmp_path / "src.db")
    fill(src, sessions=2, messages=3)
    writer = SessionManager(src)
    session = writer.create_session(Channel.MAIN, "live")

    def write_meanwhile(progress):
        assert writer.get_session(session) is not None
        writer.save_message(session, "user", "written while the dump runs")  # after each table's batch

    dump = tmp_path / "backup.jsonl"
    dump_database(src, dump, progress=write_meanwhile)
    writer.close()

    header, *rows, _trailer = lines(dump)
    assert writer_calls(rows) == []  # every message was written after the snapshot the dump reads
    for table in header["tables"]:
        assert sum(1 for row in rows if row["table"] == table["name"]) == table["rows"]


def writer_calls(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["table"] == "session_messages" and row["row"]["content"].startswith("written")]


def altered(dump: Path, change) -> Path:
    text = dump.read_text(encoding="utf-8").splitlines(keepends=True)
    text = change(text)
    dump.write_text("".join(text), encoding="utf-8")
    return dump


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda text: text[: len(text) // 2], "truncated"),
        (lambda text: [*text[:-1], text[-1][:10]], "not JSON"),
        (lambda text: [line.replace("hello world", "hello w0rld") for line in text], "checksum"),
        (lambda text: [text[0], *text[2:]], "checksum"),
        (lambda text: ["{}\n", *text[1:]], "not a starpod-session dump"),
        (lambda text: [], "empty"),
    ],
)
def test_a_damaged_dump_is_refused_before_anything_is_written(change, message, tmp_path):
    src, dst = str(tmp_path / "src.db"), tmp_path / "dst.db"
    fill(src, sessions=2)
    dump = tmp_path / "backup.jsonl"
    dump_database(src, dump)

    with pytest.raises(DumpInvalid, match=message):
        restore_database(altered(dump, change), dst)
    assert not dst.exists()


def test_a_dump_of_another_schema_revision_is_refused(tmp_path):
    src = str(tmp_path / "src.db")
    fill(src, sessions=1)
    dump = tmp_path / "backup.jsonl"
    dump_database(src, dump)
    header = lines(dump)[0]
    for revision, error in (("9999", SchemaTooNew), ("0010", SchemaOutdated)):
        text = dump.read_text().splitlines(keepends=True)
        text[0] = json.dumps({**header, "schema_revision": revision}) + "\n"
        (tmp_path / "other.jsonl").write_text("".join(text))
        with pytest.raises(error):
            restore_database(tmp_path / "other.jsonl", tmp_path / "dst.db")


def test_a_restore_into_a_database_holding_rows_is_refused(tmp_path):
    from starpod_session import TargetNotEmpty

    src, dst = str(tmp_path / "src.db"), str(tmp_path / "dst.db")
    fill(src, sessions=1)
    fill(dst, sessions=1)
    dump = tmp_path / "backup.jsonl"
    dump_database(src, dump)
    before = typed_rows(dst)
    with pytest.raises(TargetNotEmpty):
        restore_database(dump, dst)
    assert typed_rows(dst) == before


def test_a_dump_that_cannot_be_written_leaves_no_file(tmp_path, monkeypatch):
    """The disk filling up under the dump, simulated by a write failing with ENOSPC."""
    import errno

    from starpod_session.features import transfer

    src = str(tmp_path / "src.db")
    fill(src, sessions=2)
    real_init = transfer._DumpWriter.__init__

    class FillingDisk:
        def __init__(self, stream):
            self.stream, self.writes = stream, 0

        def write(self, data):
            self.writes += 1
            if self.writes > 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.stream.write(data)

        def __getattr__(self, name):
            return getattr(self.stream, name)

    def init(self, path, temporary, stream):
        real_init(self, path, temporary, FillingDisk(stream))

    monkeypatch.setattr(transfer._DumpWriter, "__init__", init)
    with pytest.raises(StorageError, match="No space left on device"):
        dump_database(src, tmp_path / "backup.jsonl")
    assert list(tmp_path.glob("*backup*")) == []


@pytest.mark.parametrize("fixture", ["rust-core-db-0.3.sqlite"])
def test_a_rust_era_file_dumps_and_restores_into_every_backend(
    fixture, target, fresh_database, writable_copy, tmp_path
):
    src = writable_copy(fixture, "core.db")
    adopted = writable_copy(fixture, "adopted.db")
    SessionManager(adopted).close()
    untouched = src.read_bytes()
    dst = fresh_database(target, "dst")

    dump_database(src, tmp_path / "core.jsonl.gz")
    restore_database(tmp_path / "core.jsonl.gz", dst)

    assert src.read_bytes() == untouched
    assert typed_rows(dst) == typed_rows(str(adopted))


def test_a_restore_stopped_by_a_full_disk_continues_where_it_stopped(tmp_path, monkeypatch):
    """Once a table is done, running the restore again must still find the next tables' rows in the file
    (SQLite's page limit, ``max_page_count``, stands for the full disk)."""
    src, dst, dump = str(tmp_path / "src.db"), str(tmp_path / "dst.db"), tmp_path / "backup.jsonl"
    fill(src, sessions=3, messages=200)
    dump_database(src, dump)
    fills_up_after(monkeypatch, dst)
    with pytest.raises(StorageError, match="is full"):
        restore_database(dump, dst, batch_size=50)
    kept = sqlite3.connect(dst).execute("SELECT count(*) FROM session_messages").fetchone()[0]
    assert 0 < kept < 600

    monkeypatch.undo()  # space freed
    report = restore_database(dump, dst, batch_size=50)
    assert report.resumed
    assert typed_rows(dst) == typed_rows(src)
