"""A copy or a restore into a server whose disk fills up: our own error saying to free space and run
the same call again, every committed batch kept, the source untouched; once space is freed, the same
call continues and verifies.

The target database lies on a small tmpfs, its server's logs on the ordinary disk (so the server
itself goes on): a private PostgreSQL keeps it in a tablespace there, and extending a table file
fails with "could not extend file ...: No space left on device" (SQLSTATE 53100); a private MariaDB
finds the database's folder on it, and InnoDB says "The table ... is full" (1114). The space is
taken by a filler file, whose deletion frees it.
"""

from __future__ import annotations

import contextlib
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
from sqlalchemy.engine import make_url

from starpod_session import StorageError, copy_database, dump_database, restore_database
from starpod_session.backends.engine import create_storage_engine, to_url

from ..cli.run import installed_command
from ..transfer.conftest import fill, typed_rows
from .servers import MariaDBServer, PostgresServer, fill_up, mariadb_missing, running, small_filesystem

pytestmark = pytest.mark.faults

PASSWORD = "pw-s3cret-9"
#: The small filesystem, and what the filler leaves free of it: room for the schema and a few batches.
TMPFS_MEGABYTES = 256
LEFT_MEGABYTES = {"postgresql": 6, "mariadb": 24}  # InnoDB grows its files by extents of several MB
BATCH = 300
#: Fifteen words of 100 letters each: some 20 MB of messages (and their search words) to copy.
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
    with (
        running(PostgresServer, "pg-small", "postgres") as server,
        small_filesystem(server.folder / "small", TMPFS_MEGABYTES) as small,
    ):
        tablespace = small / "tablespace"
        tablespace.mkdir()
        owner = pwd.getpwnam("postgres")
        os.chown(tablespace, owner.pw_uid, owner.pw_gid)
        server.sql(f"CREATE TABLESPACE small LOCATION '{tablespace}'")
        yield server, small


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
                    " ".join("".join(rng.choices(string.ascii_lowercase, k=100)) for _ in range(15)),
                    (start + timedelta(seconds=n)).isoformat(),
                )
                for n in range(BULK_MESSAGES)
            ],
        )
    return path


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDBServer]:
    """A private MariaDB server."""
    why = mariadb_missing() or tmpfs_missing()
    if why:
        pytest.skip(why)
    with running(MariaDBServer, "mariadb", "mysql") as server:
        yield server


class SmallDisk:
    """The target database on the small disk: its URL (with a password); ``fill()`` takes all the
    disk's space but ``left`` MB, ``free()`` gives it back (and starts a server that died)."""

    def __init__(self, url: str, filesystem: Path, left: int, restart: Callable[[], None]) -> None:
        self.url, self._filesystem, self._left, self._restart = url, filesystem, left, restart
        self._fillers: list[Path] = []

    def fill(self) -> None:
        self._fillers.append(fill_up(self._filesystem, self._left))

    def free(self) -> None:
        for filler in self._fillers:
            filler.unlink(missing_ok=True)
        self._restart()


@pytest.fixture(params=["postgresql", "mariadb"])
def small_disk(request: pytest.FixtureRequest) -> Iterator[SmallDisk]:
    """A new database on the small disk, gone at the end."""
    if request.param == "postgresql":
        server, small = request.getfixturevalue("pg_on_small_disk")
        server.sql("CREATE DATABASE target TABLESPACE small")
        disk = SmallDisk(server.url("target", PASSWORD), small, LEFT_MEGABYTES["postgresql"], lambda: None)
        try:
            yield disk
        finally:
            disk.free()
            server.sql("DROP DATABASE target WITH (FORCE)")
        return
    mariadb = request.getfixturevalue("mariadb")
    # The database is the folder of its name in the data directory: that folder is the small disk.
    with small_filesystem(mariadb.data / "target", TMPFS_MEGABYTES) as small:
        os.chown(small, pwd.getpwnam("mysql").pw_uid, pwd.getpwnam("mysql").pw_gid)
        disk = SmallDisk(mariadb.url("target"), small, LEFT_MEGABYTES["mariadb"], mariadb.ensure_running)
        try:
            yield disk
        finally:
            disk.free()
            with contextlib.suppress(Exception):  # its tables go; the folder, a mount point, stays
                mariadb.sql("DROP DATABASE target")


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


def assert_says_free_space_and_run_again(error: StorageError, target: str) -> None:
    """Our error: the disk is full, or (MariaDB, which aborts on "Out of disk space in rollback") the
    server went away; either way, free space and run the same command again."""
    text, password = str(error), make_url(target).password
    assert password and password not in text, text
    assert "is full" in text or ("connection was lost" in text and target.startswith("mysql")), text
    assert "free space" in text and "run the same command again" in text, text
    assert "***" in text, text


def test_a_copy_into_a_full_disk_keeps_its_batches_and_the_same_copy_continues(small_disk, source):
    target = small_disk.url
    before = digest(source)
    small_disk.fill()

    with pytest.raises(StorageError) as raised:
        copy_database(source, target, batch_size=BATCH)

    assert_says_free_space_and_run_again(raised.value, target)
    assert digest(source) == before
    small_disk.free()
    rows, recorded = committed(target)
    assert 0 < rows == recorded < BULK_MESSAGES  # every committed batch, nothing of the failed one

    report = copy_database(source, target, batch_size=BATCH)

    assert report.resumed and report.checks and all(check.ok for check in report.checks)
    assert typed_rows(target) == typed_rows(source)
    assert digest(source) == before


def test_a_restore_into_a_full_disk_keeps_its_batches_and_the_same_restore_continues(small_disk, source, tmp_path):
    target = small_disk.url
    dump = tmp_path / "backup.jsonl.gz"
    dump_database(source, dump)
    dumped = digest(str(dump))
    small_disk.fill()

    with pytest.raises(StorageError) as raised:
        restore_database(dump, target, batch_size=BATCH)

    assert_says_free_space_and_run_again(raised.value, target)
    small_disk.free()
    rows, recorded = committed(target)
    assert 0 < rows == recorded < BULK_MESSAGES

    report = restore_database(dump, target, batch_size=BATCH)

    assert report.resumed and all(check.ok for check in report.checks)
    assert typed_rows(target) == typed_rows(source)
    assert digest(str(dump)) == dumped


def test_the_command_line_says_it_in_one_line(small_disk, source):
    target = small_disk.url
    small_disk.fill()

    result = subprocess.run(
        [installed_command(), "db", "copy", "--from", source, "--to", target, "--batch-size", str(BATCH)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("starpod-session: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "free space" in result.stderr and make_url(target).password not in result.stderr
