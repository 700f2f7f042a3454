"""A full disk is recognised by each backend's own error code, not by the words of its message."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from starpod_session.storage.advice import advice, is_disk_full

from ..backends import missing_modules


def sqlite_full_error(tmp_path) -> sqlite3.Error:
    raw = sqlite3.connect(tmp_path / "small.db")
    raw.execute("CREATE TABLE t (x)")
    raw.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.Error) as raised:
        raw.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100)
    return raised.value


def test_sqlite_full_is_recognised_wrapped_or_not(tmp_path):
    error = sqlite_full_error(tmp_path)
    wrapped = OperationalError("INSERT", {}, error)
    assert is_disk_full(error) and is_disk_full(wrapped)
    assert "free space, then retry" in advice(wrapped)
    other = sqlite3.OperationalError("no such table: t")
    assert not is_disk_full(other) and advice(OperationalError("SELECT", {}, other)) == ""


@pytest.mark.skipif(bool(missing_modules("psycopg")), reason="needs psycopg")
def test_postgresql_disk_full_is_its_sqlstate_53100():
    import psycopg.errors

    # The message in another language (lc_messages) says nothing of "space": the code does.
    assert is_disk_full(psycopg.errors.DiskFull("konnte Datei nicht erweitern"))
    assert not is_disk_full(psycopg.errors.OutOfMemory("out of memory"))


@pytest.mark.skipif(bool(missing_modules("pymysql")), reason="needs pymysql")
@pytest.mark.parametrize(
    ("number", "text", "full"),
    [
        (1114, "The table 'session_messages' is full", True),
        (1021, "Disk full (./starpod/x); waiting for someone to free some space...", True),
        (1030, 'Got error 28 "No space left on device" from storage engine InnoDB', True),
        (3, "Error writing file './starpod/x' (Errcode: 28 \"No space left on device\")", True),
        (1030, 'Got error 168 "Unknown (generic) error from engine" from storage engine InnoDB', False),
        (1213, "Deadlock found when trying to get lock", False),
    ],
)
def test_mariadb_disk_full_errors(number, text, full):
    import pymysql

    assert is_disk_full(pymysql.err.OperationalError(number, text)) is full
