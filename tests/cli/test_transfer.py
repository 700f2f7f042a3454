"""``starpod-session db copy | dump | restore``: the report, JSON, refusals, Ctrl-C, the progress bar."""

from __future__ import annotations

import io

from rich.console import Console

from starpod_session.cli import progress as cli_transfer
from starpod_session.features import transfer

from ..transfer.conftest import fill, typed_rows
from .run import as_json, assert_clean_failure, run_command, run_in_process


def test_copy_prints_what_it_checked(tmp_path):
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    fill(str(src), sessions=2)

    result = run_in_process("db", "copy", "--from", src, "--to", dst)

    assert result.returncode == 0, result.stderr
    assert "session_messages: 16 rows" in result.stdout
    assert "ok  messages per session: 2 sessions" in result.stdout
    assert "DIFFERS" not in result.stdout
    assert result.stderr == ""  # no progress bar off a terminal
    assert typed_rows(str(dst)) == typed_rows(str(src))


def test_copy_json_and_the_source_from_db(tmp_path):
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    fill(str(src), sessions=1)

    report = as_json(run_in_process("db", "copy", "--to", dst, "--json", db=src))

    assert report["resumed"] is False
    assert all(check["ok"] for check in report["checks"])
    assert dict(report["rows"])["session_metadata"] == 1


def test_dump_and_restore_commands(tmp_path):
    src, dst, dump = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "backup.jsonl.gz"
    fill(str(src), sessions=2)

    assert run_in_process("db", "dump", dump, db=src).returncode == 0
    restored = run_in_process("db", "restore", dump, db=dst)

    assert restored.returncode == 0, restored.stderr
    assert "ok  usage_stats: total cost_usd" in restored.stdout
    assert typed_rows(str(dst)) == typed_rows(str(src))


def test_a_refused_target_is_one_line_and_exit_1(tmp_path):
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    fill(str(src), sessions=1)
    fill(str(dst), sessions=1)

    result = run_command("db", "copy", "--from", src, "--to", dst)

    assert_clean_failure(result)
    assert "already holds rows" in result.stderr


def test_ctrl_c_keeps_what_is_done_and_prints_how_to_continue(tmp_path, monkeypatch):
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    fill(str(src), sessions=3, messages=20)
    real_insert = transfer.storage.insert_rows
    calls = []

    def interrupted_later(connection, plan, rows, **options):
        calls.append(plan.name)
        if plan.name == "session_messages" and calls.count("session_messages") == 3:
            raise KeyboardInterrupt
        real_insert(connection, plan, rows, **options)

    monkeypatch.setattr(transfer.storage, "insert_rows", interrupted_later)
    result = run_in_process("db", "copy", "--from", src, "--to", dst, "--batch-size", 10)

    assert result.returncode == 130
    assert "interrupted; every batch copied so far is kept" in result.stderr
    assert f"run: starpod-session db copy --from {src} --to {dst}" in result.stderr
    monkeypatch.undo()
    again = run_in_process("db", "copy", "--from", src, "--to", dst)
    assert again.returncode == 0, again.stderr
    assert "resumed and finished" in again.stdout
    assert typed_rows(str(dst)) == typed_rows(str(src))


def test_the_progress_bar_shows_each_table_with_its_rate():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with cli_transfer.progress_display(True, console) as progress:
        assert progress is not None
        progress(transfer.TransferProgress("copy", "session_messages", 500, 1000))
        progress(transfer.TransferProgress("copy", "session_messages", 1000, 1000))
    shown = screen.getvalue()
    assert "copy session_messages" in shown
    assert "1000/1000" in shown
    assert "rows/s" in shown

    with cli_transfer.progress_display(False, console) as progress:
        assert progress is None
    with cli_transfer.progress_display(True, Console(file=io.StringIO())) as progress:
        assert progress is None  # not a terminal


def test_sessions_export_all_writes_every_closed_transcript(tmp_path):
    src = tmp_path / "src.db"
    fill(str(src), sessions=4)  # sessions 1 and 3 closed (and the deleted one gone)

    result = run_in_process("sessions", "export", "--all", tmp_path / "out", db=src)

    assert result.returncode == 0, result.stderr
    assert "2 transcript(s) written" in result.stdout
    assert len(list((tmp_path / "out").glob("*.md"))) == 2
    assert result.stderr == ""


def test_the_upgrade_and_counter_bars():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with cli_transfer.progress_display(True, console) as progress:
        assert progress is not None
        progress(transfer.TransferProgress("upgrade", None, 1, 2))
        progress(transfer.TransferProgress("upgrade 0010", "session_message_words", 700, 1000))
        progress(transfer.TransferProgress("upgrade", None, 2, 2))
    with cli_transfer.counter_display(True, "prune", 10, "sessions", console) as done:
        done(10)
    shown = screen.getvalue()
    assert "2/2" in shown and "migrations/s" in shown
    assert "upgrade 0010 session_message_words" in shown and "700/1000" in shown and "rows/s" in shown
    assert "prune" in shown and "10/10" in shown and "sessions/s" in shown


def test_upgrade_and_prune_still_print_their_lines_off_a_terminal(tmp_path):
    path = tmp_path / "new.db"
    upgraded = run_in_process("db", "upgrade", "--db", path)
    assert upgraded.returncode == 0 and upgraded.stderr == ""
    fill(str(path), sessions=2)
    pruned = run_in_process("prune", "--older-than", "1d", "--yes", db=path)
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned: 1 session(s)" in pruned.stdout
    assert pruned.stderr == ""
