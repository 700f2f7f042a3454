"""Chat logs are private: the SQLite file, its -wal/-shm files and transcripts are owner-only (0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest

from starpod_session import Channel, SessionManager

PRIVATE = 0o600


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=lambda umask: f"umask-{umask:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this process umask (the modes must not depend on it)."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_database_and_its_wal_and_shm_files_are_readable_by_their_owner_only(tmp_path, umask):
    path = tmp_path / "sessions.db"
    with SessionManager(path) as manager:
        manager.create_session(Channel.MAIN, "k")
        files = [path, path.with_name("sessions.db-wal"), path.with_name("sessions.db-shm")]
        assert {file.name: mode(file) for file in files} == {file.name: PRIVATE for file in files}


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path):
    path = tmp_path / "shared.db"
    SessionManager(path).close()
    path.chmod(0o640)
    SessionManager(path).close()
    assert mode(path) == 0o640


def test_an_exported_transcript_is_readable_by_its_owner_only(tmp_path, umask):
    with SessionManager(tmp_path / "sessions.db", tmp_path / "transcripts") as manager:
        session_id = manager.create_session(Channel.MAIN, "k")
        manager.save_message(session_id, "user", "private")
        manager.close_session(session_id, "done")
        first = manager.export_transcript(session_id)
        assert mode(first) == PRIVATE
        manager.close_session(session_id, "a new summary")  # rewritten through a new temporary file
        assert mode(manager.export_transcript(session_id)) == PRIVATE
