"""``sessions archive | unarchive``, ``sessions list --archived | --all`` and the ``costs`` "By tool" table."""

from __future__ import annotations

import json

import pytest

from starpod_session import Channel, SessionManager

from .run import as_json, formatting_only
from .run import run_in_process as cli


@pytest.fixture
def db(db_target, tmp_path):
    """Two sessions, ``kept`` and ``old``, and tool calls: Bash three times (one failed), Read once."""
    with SessionManager(db_target, tmp_path / "sessions") as manager:
        old = manager.create_session(Channel.MAIN, "old")
        kept = manager.create_session(Channel.MAIN, "kept")
        for n, (name, failed) in enumerate([("Bash", False), ("Bash", True), ("Read", False), ("Bash", False)]):
            manager.save_message(kept, "tool_use", json.dumps({"type": "tool_use", "id": f"tu_{n}", "name": name}))
            result = {"type": "tool_result", "tool_use_id": f"tu_{n}", "content": "", "is_error": failed}
            manager.save_message(kept, "tool_result", json.dumps(result))
    return {"db": db_target, "old": old, "kept": kept}


def ids(db, *arguments):
    names = {db["old"]: "old", db["kept"]: "kept"}
    return [names[row["id"]] for row in as_json(cli("sessions", "list", "--json", *arguments, db=db["db"]))]


def test_archive_hides_a_session_from_the_listing_and_unarchive_brings_it_back(db):
    archived = as_json(cli("sessions", "archive", db["old"][:8], "--json", db=db["db"]))
    assert (archived["id"], archived["is_archived"]) == (db["old"], True)
    assert ids(db) == ["kept"]
    assert ids(db, "--archived") == ["old"]
    assert ids(db, "--all") == ["kept", "old"]

    result = cli("sessions", "unarchive", db["old"], db=db["db"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"unarchived {db['old']}"
    assert ids(db) == ["kept", "old"] and ids(db, "--archived") == []


def test_archiving_an_unknown_session_fails_in_one_line(backend, db):
    formatting_only(backend)
    result = cli("sessions", "archive", "no-such-session", db=db["db"])
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("starpod-session: ") and "no-such-session" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_archived_and_all_exclude_each_other(backend, db):
    formatting_only(backend)
    result = cli("sessions", "list", "--archived", "--all", db=db["db"])
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_the_table_marks_archived_sessions(backend, db):
    formatting_only(backend)
    cli("sessions", "archive", db["old"], db=db["db"])
    result = cli("sessions", "list", "--all", db=db["db"])
    assert result.returncode == 0, result.stderr
    assert "open, archived" in result.stdout


def test_costs_json_carries_by_tool_and_prompt_tokens(db):
    overview = as_json(cli("costs", "--json", db=db["db"]))["overview"]
    assert overview["by_tool"] == [
        {"tool_name": "Bash", "invocations": 3, "errors": 1},
        {"tool_name": "Read", "invocations": 1, "errors": 0},
    ]
    assert overview["total_prompt_tokens"] == 0


def test_costs_prints_a_by_tool_table_with_the_error_rate(backend, db):
    formatting_only(backend)
    result = cli("costs", db=db["db"])
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("By tool") :]
    rows = {
        line.split()[0]: line.split()[1:4] for line in table.splitlines() if line.split()[:1] in (["Bash"], ["Read"])
    }
    assert rows == {"Bash": ["3", "1", "33.3%"], "Read": ["1", "0", "0.0%"]}
