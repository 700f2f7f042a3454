"""``starpod-session db upgrade | current | check``, run as a user runs them.

In-process (``main(argv)``: exit status, stdout and stderr as the command gives them);
the installed command as a process where only a process shows it (no traceback, ``python -m``)."""

from __future__ import annotations

import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from starpod_session.cli import db as cli_db
from starpod_session.cli.db import EXIT_BEHIND
from starpod_session.cli.progress import EXIT_INTERRUPTED
from starpod_session.storage.schema import BASELINE_REVISION, head_revision, upgrade_schema

from ..helpers import command_target, migration_module, raw_engine, snapshot, stamps
from ..schema.test_migrations import populate
from ..schema.test_upgrade_progress import BEFORE_BACKFILLS, add_plain_messages, add_tool_messages
from .run import assert_clean_failure, command_environment, installed_command, run_command, run_in_process


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


# -- the progress of a long upgrade ------------------------------------------------------------------


def file_before_the_backfills(path: Path) -> Path:
    """A SQLite file at 0006 holding more tool messages than a batch of 0007's backfill."""
    with raw_engine(str(path), statement_timeout=None) as engine:
        upgrade_schema(engine, BASELINE_REVISION)
        populate(engine)
        upgrade_schema(engine, BEFORE_BACKFILLS)
        add_tool_messages(engine)
    return path


def on_a_terminal(*arguments: object) -> tuple[int, str, str]:
    """Run the installed command with its stderr on a pseudo-terminal: (status, stdout, the terminal's text)."""
    controller, terminal = pty.openpty()
    environment = command_environment(TERM="xterm-256color")
    process = subprocess.Popen(
        [installed_command(), *map(str, arguments)], stdout=subprocess.PIPE, stderr=terminal, env=environment
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the command closed the terminal's last end
            break
        if not chunk:
            break
        screen += chunk
    out, _ = process.communicate()
    os.close(controller)
    return process.returncode, out.decode(), screen.decode(errors="replace")


def bar_lines(screen: str, name: str) -> list[tuple[int, int, int, str]]:
    """Every drawing of the bar ``name`` on the terminal, in order: (done, total, rows/s, time left)."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    pattern = re.escape(name) + r" [━╸╺ ]*(\d+)/(\d+) +([\d,]+) rows/s +(\S+)"
    return [
        (int(done), int(total), int(rate.replace(",", "")), left)
        for done, total, rate, left in re.findall(pattern, text)
    ]


def test_upgrade_shows_each_backfill_with_its_rows_and_rate_on_a_terminal(tmp_path):
    path = file_before_the_backfills(tmp_path / "large.db")
    with raw_engine(str(path), statement_timeout=None) as engine:  # more messages than two batches of 0008's
        add_plain_messages(engine, 2 * migration_module("0008").BATCH)

    status, out, screen = on_a_terminal("db", "upgrade", "--db", path)

    assert status == 0, screen
    assert out.strip() == f"{path}: upgraded from {BEFORE_BACKFILLS} to {head_revision()}"
    assert "upgrade 0007 tool_calls" in screen and "1335/1335" in screen  # the rows of the backfill
    assert "upgrade" in screen and "6/6" in screen and "migrations/s" in screen
    for name in ("upgrade 0007 tool_calls", "upgrade 0008 session_messages", "upgrade 0009 usage_daily"):
        drawn = bar_lines(screen, name)  # (which batches are drawn depends on the terminal's refresh)
        done, total, rate, left = drawn[-1]
        assert done == total > 1000 and rate > 0 and left == "0:00:00", (name, drawn)


def test_upgrade_shows_no_bar_on_a_pipe_nor_with_json(tmp_path):
    piped = db_process("upgrade", file_before_the_backfills(tmp_path / "piped.db"))
    assert piped.returncode == 0 and piped.stderr == ""

    path = file_before_the_backfills(tmp_path / "json.db")
    status, out, screen = on_a_terminal("db", "upgrade", "--db", path, "--json")
    assert status == 0 and "upgrade 0007" not in screen and "rows/s" not in screen
    assert json.loads(out) == {"database": str(path), "from": BEFORE_BACKFILLS, "to": head_revision()}


def test_ctrl_c_during_upgrade_rolls_back_and_prints_how_to_continue(tmp_path, monkeypatch):
    path = file_before_the_backfills(tmp_path / "large.db")
    real_upgrade = cli_db.upgrade_schema

    def interrupted_mid_backfill(engine, revision, *, target, progress):
        def stop(event):
            if event.step == "upgrade 0007" and event.done:
                raise KeyboardInterrupt

        real_upgrade(engine, revision, target=target, progress=stop)

    monkeypatch.setattr(cli_db, "upgrade_schema", interrupted_mid_backfill)
    result = db("upgrade", path)

    assert result.returncode == EXIT_INTERRUPTED
    assert f"{path} is at revision {BEFORE_BACKFILLS}" in result.stderr
    assert f"To continue, run: starpod-session db upgrade --db {path}" in result.stderr
    assert stamps(str(path)) == [BEFORE_BACKFILLS]  # one transaction: nothing of it kept
    monkeypatch.undo()
    again = db("upgrade", path)
    assert again.stdout.strip() == f"{path}: upgraded from {BEFORE_BACKFILLS} to {head_revision()}"
