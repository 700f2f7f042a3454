"""``search``, ``sessions delete``, ``users forget`` and ``prune`` run as an operator runs them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from freezegun import freeze_time

from starpod_session import SessionManager

from .run import run_in_process
from .test_operators import as_json, cli

NOW = datetime.now(timezone.utc)


def populate(db_target, tmp_path):
    with SessionManager(db_target, tmp_path / "sessions") as manager:
        with freeze_time(NOW - timedelta(days=100)):
            old = manager.create_session("main", "old", user_id="alice")
            manager.save_message(old, "user", "Please deploy the billing service")
            manager.close_session(old, "done")
        bob = manager.create_session("main", "bob", user_id="bob")
        manager.save_message(bob, "user", "deployment went fine")
    return old, bob


def test_search_prints_hits_with_the_terms_highlighted_and_json(db_target, tmp_path):
    old, bob = populate(db_target, tmp_path)
    result = cli("search", "deploy*", "--user", "alice", db=db_target)
    assert result.returncode == 0, result.stderr
    assert old[:8] in result.stdout and "billing" in result.stdout and bob[:8] not in result.stdout
    hits = as_json(cli("search", "deploy*", "--json", db=db_target))
    assert {hit["session_id"] for hit in hits} == {old, bob}
    assert any("«deployment»" in hit["snippet"] for hit in hits)
    failed = cli("search", "+-*", db=db_target)
    # A query the library refuses is a bad command-line value: the usage, the argument's name, status 2.
    assert failed.returncode == 2 and "argument QUERY" in failed.stderr and "Traceback" not in failed.stderr


def test_erasing_commands_refuse_without_yes_off_a_terminal_and_dry_run_changes_nothing(db_target, tmp_path):
    old, bob = populate(db_target, tmp_path)
    for arguments in (("sessions", "delete", old), ("users", "forget", "alice"), ("prune", "--older-than", "90d")):
        refused = cli(*arguments, db=db_target)
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert as_json(cli(*arguments, "--dry-run", "--json", db=db_target))["sessions"] == 1
    assert as_json(cli("prune", "--older-than", "90d", "--yes", "--json", db=db_target))["sessions"] == 1
    assert as_json(cli("users", "forget", "bob", "--yes", "--json", db=db_target))["messages"] == 1
    with SessionManager(db_target, tmp_path / "sessions") as manager:
        assert manager.get_session(old) is None and manager.get_session(bob) is None
    assert cli("prune", "--older-than", "ninety", db=db_target).returncode == 2


def test_ctrl_c_during_prune_keeps_whole_batches_and_says_how_to_prune_the_rest(tmp_path, monkeypatch):
    db = tmp_path / "sessions.db"
    with SessionManager(db) as manager, freeze_time(NOW - timedelta(days=100)):
        for n in range(3):
            manager.close_session(manager.create_session("main", f"old {n}"), "done")
    real_prune = SessionManager.prune

    def interrupted_after_one_batch(self, older_than, *, dry_run=False, progress=None, **options):
        if dry_run:
            return real_prune(self, older_than, dry_run=True, **options)

        def report(count):
            if progress is not None:
                progress(count)
            if count >= 1:
                raise KeyboardInterrupt

        return real_prune(self, older_than, progress=report, batch_size=1, **options)

    monkeypatch.setattr(SessionManager, "prune", interrupted_after_one_batch)
    result = run_in_process("prune", "--older-than", "90d", "--yes", db=db)
    monkeypatch.undo()

    assert result.returncode == 130
    assert "interrupted; 1 of 3 sessions pruned" in result.stderr
    assert "run the same command again" in result.stderr
    again = run_in_process("prune", "--older-than", "90d", "--yes", "--json", db=db)
    assert again.returncode == 0, again.stderr
    assert as_json(again)["sessions"] == 2
