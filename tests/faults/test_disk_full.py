"""A copy or a restore into a server whose disk fills up: our own error saying to free space and run
the same call again, every committed batch kept, the source untouched; once space is freed, the same
call continues and verifies.

A private PostgreSQL keeps the target database in a tablespace on a small tmpfs (its WAL stays on
the ordinary disk, so the server itself goes on): extending a table file there fails with
"could not extend file ...: No space left on device" (SQLSTATE 53100). The space is taken by a
filler file, whose deletion frees it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import random
import sqlite3
import string
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from starpod_session import StorageError, copy_database, dump_database, restore_database
from starpod_session.backends.engine import create_storage_engine, to_url

from ..cli.run import installed_command
from ..transfer.conftest import fill, typed_rows
from .servers import PostgresServer, fill_up, private_folder, small_filesystem

pytestmark = pytest.mark.faults

PASSWORD = "pw-s3cret-9"
#: The small filesystem, and what the filler leaves free of it: room for the schema and a few batches.
TMPFS_MEGABYTES = 256
LEFT_MEGABYTES = 6
BATCH = 300
#: About 1,500 characters each: some 30 MB of messages (and their search vectors) to copy.
BULK_MESSAGES = 12_000


def tmpfs_missing() -> str | None:
    """Why a tmpfs cannot be mounted here, or ``None`` (tried on a scratch folder)."""
    if os.geteuid() != 0:
        return "needs root to mount a small filesystem (tmpfs)"
    with tempfile.TemporaryDirectory(prefix="starpod-tmpfs-probe-") as folder:
        try:
            with small_filesystem(Path(folder) / "probe", 1):
                return None
        except OSError as why:
            return str(why)


@pytest.fixture(scope="module")
def pg_on_small_disk(pg_available) -> Iterator[tuple[PostgresServer, Path]]:
    """A private PostgreSQL whose tablespace ``small`` lies on a tmpfs of ``TMPFS_MEGABYTES``."""
    why = tmpfs_missing()
    if why:
        pytest.skip(why)
    with private_folder("pg-small", "postgres") as folder, small_filesystem(folder / "small", TMPFS_MEGABYTES) as small:
        tablespace = small / "tablespace"
        tablespace.mkdir()
        owner = pwd.getpwnam("postgres")
        os.chown(tablespace, owner.pw_uid, owner.pw_gid)
        server = PostgresServer(folder)
        try:
            server.start()
            server.sql(f"CREATE TABLESPACE small LOCATION '{tablespace}'")
            yield server, small
        finally:
            server.stop()  # before the filesystem under it goes


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database of every kind of row, and ``BULK_MESSAGES`` long messages."""
    path = str(tmp_path_factory.mktemp("source") / "source.db")
    fill(path, sessions=3, messages=5)
    rng = random.Random(30)
    start = datetime(2026, 2, 1, tzinfo=timezone.utc)
    with sqlite3.connect(path) as raw:
        session = raw.execute("SELECT id FROM session_metadata ORDER BY id LIMIT 1").fetchone()[0]
        raw.executemany(
            "INSERT INTO session_messages (session_id, role, content, timestamp) VALUES (?, 'assistant', ?, ?)",
            [
                (
                    session,
                    " ".join("".join(rng.choices(string.ascii_lowercase, k=9)) for _ in range(150)),
                    (start + timedelta(seconds=n)).isoformat(),
                )
                for n in range(BULK_MESSAGES)
            ],
        )
    return path


@pytest.fixture
def small_database(pg_on_small_disk) -> Iterator[tuple[str, Callable[[], Path]]]:
    """A new database in the tablespace on the small disk, its URL (with a password), and a function
    taking all the disk's space but ``LEFT_MEGABYTES``; the filler and the database go at the end."""
    server, small = pg_on_small_disk
    server.sql("CREATE DATABASE target TABLESPACE small")
    fillers: list[Path] = []

    def fill_disk() -> Path:
        fillers.append(fill_up(small, LEFT_MEGABYTES))
        return fillers[-1]

    try:
        yield server.url("target", PASSWORD), fill_disk
    finally:
        for filler in fillers:
            filler.unlink(missing_ok=True)
        server.sql("DROP DATABASE target WITH (FORCE)")


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def committed(target: str) -> tuple[int, int]:
    """(messages in the target, messages its bookkeeping says were committed)."""
    engine = create_storage_engine(to_url(target))
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT count(*) FROM session_messages")).scalar_one()
            state = connection.execute(
                sa.text("SELECT value FROM starpod_transfer WHERE name = 'table:session_messages'")
            ).scalar_one()
    finally:
        engine.dispose()
    return rows, json.loads(state)["rows"]


def assert_says_free_space_and_run_again(error: StorageError) -> None:
    text = str(error)
    assert "is full" in text and "No space left on device" in text, text
    assert "free space" in text and "run the same command again" in text, text
    assert PASSWORD not in text and "***" in text, text


def test_a_copy_into_a_full_disk_keeps_its_batches_and_the_same_copy_continues(small_database, source):
    target, fill_disk = small_database
    before = digest(source)
    filler = fill_disk()

    with pytest.raises(StorageError) as raised:
        copy_database(source, target, batch_size=BATCH)

    assert_says_free_space_and_run_again(raised.value)
    assert digest(source) == before
    rows, recorded = committed(target)
    assert 0 < rows == recorded < BULK_MESSAGES  # every committed batch, nothing of the failed one

    filler.unlink()  # space freed
    report = copy_database(source, target, batch_size=BATCH)

    assert report.resumed and report.checks and all(check.ok for check in report.checks)
    assert typed_rows(target) == typed_rows(source)
    assert digest(source) == before


def test_a_restore_into_a_full_disk_keeps_its_batches_and_the_same_restore_continues(small_database, source, tmp_path):
    target, fill_disk = small_database
    dump = tmp_path / "backup.jsonl.gz"
    dump_database(source, dump)
    dumped = digest(str(dump))
    filler = fill_disk()

    with pytest.raises(StorageError) as raised:
        restore_database(dump, target, batch_size=BATCH)

    assert_says_free_space_and_run_again(raised.value)
    rows, recorded = committed(target)
    assert 0 < rows == recorded < BULK_MESSAGES

    filler.unlink()
    report = restore_database(dump, target, batch_size=BATCH)

    assert report.resumed and all(check.ok for check in report.checks)
    assert typed_rows(target) == typed_rows(source)
    assert digest(str(dump)) == dumped


def test_the_command_line_says_it_in_one_line(small_database, source):
    target, fill_disk = small_database
    fill_disk()

    result = subprocess.run(
        [installed_command(), "db", "copy", "--from", source, "--to", target, "--batch-size", str(BATCH)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("starpod-session: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "free space" in result.stderr and PASSWORD not in result.stderr
