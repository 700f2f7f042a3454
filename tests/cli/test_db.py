"""``starpod-session db upgrade | current | check``, run as a user runs them.

In-process (``main(argv)``: exit status, stdout and stderr as the command gives them);
the installed command as a process where only a process shows it (no traceback, ``python -m``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from starpod_session.cli.db import EXIT_BEHIND
from starpod_session.storage.schema import BASELINE_REVISION, head_revision

from ..helpers import command_target, snapshot, stamps
from .run import assert_clean_failure, run_command, run_in_process


def db(command: str, target: object, *arguments: object) -> subprocess.CompletedProcess[str]:
    """``starpod-session db COMMAND --db TARGET ...``, in-process."""
    return run_in_process("db", command, "--db", target, *arguments)


def db_process(command: str, target: object, *arguments: object) -> subprocess.CompletedProcess[str]:
    """The same as a process of the installed command."""
    return run_command("db", command, "--db", target, *arguments)


def test_upgrade_current_and_check_on_a_new_database(empty_db_target):
    shown = command_target(empty_db_target)
    upgraded = db("upgrade", empty_db_target)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"{shown}: upgraded from none to {head_revision()}"

    current = db("current", empty_db_target)
    assert (current.returncode, current.stdout.strip()) == (0, f"{head_revision()} (head)")

    checked = db("check", empty_db_target)
    assert checked.returncode == 0, checked.stderr
    assert "schema matches the models" in checked.stdout

    again = db("upgrade", empty_db_target)
    assert (again.returncode, again.stdout.strip()) == (0, f"{shown}: already at {head_revision()}")


def test_a_database_behind_head_is_reported_and_upgraded_step_by_step(empty_db_target):
    shown = command_target(empty_db_target)
    first = db("upgrade", empty_db_target, "--revision", BASELINE_REVISION)
    assert first.stdout.strip() == f"{shown}: upgraded from none to {BASELINE_REVISION}"

    current = db("current", empty_db_target)
    assert current.returncode == EXIT_BEHIND
    assert current.stdout.startswith(f"{BASELINE_REVISION} (behind head {head_revision()}")
    assert f"starpod-session db upgrade --db {shown}" in current.stdout

    checked = db("check", empty_db_target)
    assert_clean_failure(checked, EXIT_BEHIND)
    assert f"Run: starpod-session db upgrade --db {shown}" in checked.stderr

    second = db("upgrade", empty_db_target)
    assert second.stdout.strip() == f"{shown}: upgraded from {BASELINE_REVISION} to {head_revision()}"
    assert db("check", empty_db_target).returncode == 0


def test_check_names_the_drift_between_models_and_database(tmp_path):
    path = tmp_path / "drifted.db"
    assert db("upgrade", path).returncode == 0
    with sqlite3.connect(path) as raw:
        raw.execute("DROP INDEX idx_usage_stats_session")
    checked = db("check", path)
    assert_clean_failure(checked)
    assert "differs from this release's models" in checked.stderr
    assert "add_index idx_usage_stats_session" in checked.stderr


@pytest.mark.parametrize("fixture", ["rust-session-db-2026-03.sqlite", "rust-core-db-0.3.sqlite"])
def test_a_rust_era_file_is_adopted_by_db_upgrade_and_then_passes_check(writable_copy, fixture):
    path = writable_copy(fixture)
    assert db("current", path).stdout.startswith("none (behind head")

    upgraded = db("upgrade", path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"{path}: upgraded from none to {head_revision()}"
    checked = db("check", path)
    assert checked.returncode == 0, checked.stderr
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM session_messages").fetchone()[0] == 7


def test_a_database_from_a_newer_release_is_refused_by_every_command(tmp_path):
    path = tmp_path / "future.db"
    assert db("upgrade", path).returncode == 0
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    before = snapshot(str(path))
    for command in ("upgrade", "current", "check"):
        result = db(command, path)
        assert_clean_failure(result)
        assert "ffff_from_the_future" in result.stderr and "Upgrade the package" in result.stderr
    assert snapshot(str(path)) == before


def test_errors_are_one_line_on_stderr_without_a_traceback(tmp_path):
    missing = tmp_path / "missing.db"
    for command in ("current", "check"):
        assert_clean_failure(db_process(command, missing))
        assert not missing.exists()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 300)
    for command in ("upgrade", "current", "check"):
        result = db_process(command, garbage)
        assert_clean_failure(result)
        assert "file is not a database" in result.stderr

    unknown = db_process("upgrade", tmp_path / "new.db", "--revision", "nope")
    assert_clean_failure(unknown)
    assert "unknown revision 'nope'" in unknown.stderr
    assert_clean_failure(db_process("current", "postgresql+psycopg://nobody@127.0.0.1:1/nothing"))
    assert_clean_failure(db_process("current", "nosuchdialect://x/y"))


def test_the_help_documents_the_exit_statuses():
    result = subprocess.run(
        [sys.executable, "-m", "starpod_session", "db", "current", "--help"], capture_output=True, text=True
    )  # python -m starpod_session is the same command
    assert result.returncode == 0
    assert f"{EXIT_BEHIND}  the database is behind this release" in result.stdout
    assert "0  success" in result.stdout


def test_db_upgrade_stamps_a_database_once(empty_db_target):
    assert db("upgrade", empty_db_target).returncode == 0
    assert db("upgrade", empty_db_target).returncode == 0
    assert stamps(empty_db_target) == [head_revision()]
