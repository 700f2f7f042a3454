"""``starpod-session`` behaves like a well-made command: where it takes the database, how it
fails, how it reports bad values, pipes, narrow terminals, help texts, and ``alembic`` logging."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from starpod_session import Channel, SessionManager, UsageRecord
from starpod_session._common import urls
from starpod_session.backends import engine
from starpod_session.cli import build_parser
from starpod_session.storage.schema import head_revision

from .run import (
    assert_clean_failure,
    command_environment,
    installed_command,
    run_command,
    run_commands,
    run_in_process,
    run_main,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "S3cret"


@pytest.fixture(autouse=True)
def no_database_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STARPOD_SESSION_DB", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A SQLite database with two sessions and usage by two models on two days."""
    path = tmp_path / "sessions.db"
    with SessionManager(path) as manager:
        with freeze_time("2026-03-01T12:00:00Z"):
            first = manager.create_session(Channel.MAIN, "a", user_id="alice")
            manager.save_message(first, "user", "hello")
            manager.record_usage(first, UsageRecord(10, 1, 0, 0, 0.1, "zeta-small", "alice"), turn=1)
        with freeze_time("2026-03-02T12:00:00Z"):
            second = manager.create_session(Channel.MAIN, "b", user_id="bob")
            manager.record_usage(second, UsageRecord(10, 1, 0, 0, 0.2, "zeta-small", "bob"), turn=1)
            manager.record_usage(second, UsageRecord(10, 1, 0, 0, 5.0, "alpha-large", "bob"), turn=2)
    return path


# -- where the database comes from ------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["db", "current"], ["db", "check"], ["db", "upgrade"], ["sessions", "list"], ["costs"]]
)
def test_every_command_takes_db_before_or_after_the_subcommand_or_from_the_environment(
    capsys, monkeypatch, sqlite_db, command
):
    for arguments in (["--db", sqlite_db, *command], [*command, "--db", sqlite_db]):
        status, out, err = run_main(capsys, *arguments)
        assert (status, err) == (0, ""), arguments
        assert out
    monkeypatch.setenv("STARPOD_SESSION_DB", str(sqlite_db))
    status, out, err = run_main(capsys, *command)
    assert (status, err) == (0, "")


def test_a_command_parses_checks_and_hides_the_password_of_its_database_once(capsys, monkeypatch, backend, db_target):
    """``--db`` becomes a URL, is checked and gets its shown form in one pass; the manager takes that as it is."""
    calls: Counter[str] = Counter()

    def count_calls(module: object, name: str) -> None:
        original = getattr(module, name)

        def counted(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    ours = [module for name, module in sys.modules.items() if name.startswith("starpod_session")]
    for function in (engine.to_url, engine.make_url, engine._usable, urls.redact_url):
        for module in ours:
            if getattr(module, function.__name__, None) is function:  # wherever the name is bound
                count_calls(module, function.__name__)
    status, out, err = run_main(capsys, "sessions", "list", "--db", db_target)
    assert (status, err) == (0, "") and out
    url = int(backend != "sqlite")  # a path is no URL: nothing to parse, check or hide
    expected = {"to_url": 1, "make_url": url, "_usable": url, "redact_url": url}
    assert {name: calls[name] for name in expected} == expected


def test_db_still_takes_a_positional_target(capsys, sqlite_db):
    assert run_main(capsys, "db", "current", sqlite_db) == (0, f"{head_revision()} (head)\n", "")


def test_db_commands_say_which_database_is_missing(capsys):
    status, _, err = run_main(capsys, "db", "current")
    assert status == 1
    assert err.strip() == "starpod-session: say which database: --db PATH_OR_URL, or set STARPOD_SESSION_DB"


def test_the_demo_ignores_the_operators_database_variable(capsys, monkeypatch, sqlite_db, tmp_path):
    monkeypatch.setenv("STARPOD_SESSION_DB", str(sqlite_db))
    before = sqlite_db.read_bytes()
    status, out, _ = run_main(capsys, "demo")
    assert status == 0 and str(sqlite_db) not in out
    assert sqlite_db.read_bytes() == before
    kept = tmp_path / "demo.db"
    assert run_main(capsys, "--db", kept, "demo")[0] == 0
    assert kept.is_file()


# -- failures: one line, no traceback, no password ------------------------------------------------


def corrupt_copy(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    for index in range(4096 + 100, len(data), 7):  # every page but the header's
        data[index] = 0x55
    target.write_bytes(bytes(data))
    return target


def test_every_failure_is_one_line_on_stderr_without_a_traceback_or_a_password(sqlite_db, tmp_path):
    with sqlite3.connect(sqlite_db) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 300)
    corrupt = corrupt_copy(sqlite_db, tmp_path / "corrupt.db")
    cases = {
        "unknown scheme": ("nosuch", "nosuch://x/y"),
        "a scheme SQLAlchemy dropped": ("postgres", f"postgres://u:{SECRET}@127.0.0.1:1/db"),
        "missing driver": ("asyncpg", f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/db"),
        "unreachable": ("127.0.0.1", f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db"),
        "password in the query": ("password=***", f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}"),
        "not a database": ("file is not a database", garbage),
        "corrupt": ("malformed", corrupt),
        "no file name": ("sqlite://", "sqlite://"),
    }
    runs = [
        [*command, "--db", target]
        for _, target in cases.values()
        for command in (["sessions", "list"], ["db", "current"])
    ]
    results = run_commands(runs)
    for (words, _), pair in zip(cases.values(), zip(results[::2], results[1::2], strict=True), strict=True):
        for result in pair:
            assert_clean_failure(result)
            assert SECRET not in result.stderr, result.stderr
            assert words in result.stderr, (result.args, result.stderr)


def test_upgrade_names_a_server_database_without_its_password(capsys):
    status, out, err = run_main(capsys, "db", "upgrade", "--db", f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db")
    assert status == 1 and SECRET not in out + err
    assert "postgresql+psycopg://u:***@127.0.0.1:1/db" in err


# -- bad command-line values exit 2 -------------------------------------------------------------


def test_a_bad_value_exits_2_with_the_usage_even_when_caught_after_parsing(sqlite_db):
    [limit, last] = run_commands(
        [
            ["sessions", "list", "--limit", "-1", "--db", sqlite_db],
            ["sessions", "show", "x", "--last", "-3", "--db", sqlite_db],
        ]
    )
    for result, flag in ((limit, "--limit"), (last, "--last")):
        assert result.returncode == 2, result
        assert result.stderr.startswith("usage: starpod-session")
        assert f"starpod-session sessions {result.args[1]}: error: argument {flag}:" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["costs", "--since", "1d", "--until", "2d"], "argument --until:"),
        (["sessions", "list", "--channel", "irc"], "argument --channel: unknown channel 'irc'"),
        (["sessions", "show", ""], "argument ID:"),
    ],
)
def test_values_the_library_rejects_exit_2_naming_the_flag(capsys, sqlite_db, arguments, expected):
    status, _, err = run_main(capsys, *arguments, "--db", sqlite_db)
    assert status == 2, err
    assert expected in err and "usage:" in err


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2026-03-01T10:00:00", "has no UTC offset; add Z or +HH:MM"),
        ("yesterday", "not a time"),
        ("2026-02-30", "not a time"),
        ("2026-03-01T25:00:00Z", "not a time"),
    ],
)
@pytest.mark.parametrize("flag", ["--since", "--until"])
def test_since_and_until_errors_name_the_flag_and_every_accepted_form(capsys, sqlite_db, flag, value, why):
    status, _, err = run_main(capsys, "costs", flag, value, "--db", sqlite_db)
    assert status == 2
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"starpod-session costs: error: argument {flag}: {value!r} ")
    assert why in message
    for form in ("RFC 3339", "2026-03-01T09:00:00+01:00", "YYYY-MM-DD", "Nd"):
        assert form in message
    assert f"invalid {flag[2:]}" not in err


def test_since_and_until_take_every_documented_form(capsys, sqlite_db):
    for since, until in [
        ("2026-03-02", None),
        ("2026-03-02T00:00:00Z", None),
        ("2026-03-02T01:00:00+01:00", "2026-03-03"),
    ]:
        arguments = ["costs", "--json", "--since", since, *(["--until", until] if until else []), "--db", sqlite_db]
        status, out, err = run_main(capsys, *arguments)
        assert status == 0, err
        assert json.loads(out)["overview"]["total_cost_usd"] == 5.2
    with freeze_time("2026-03-02T13:00:00Z"):
        status, out, _ = run_main(capsys, "costs", "--json", "--since", "1d", "--db", sqlite_db)
    assert json.loads(out)["since"] == "2026-03-01T13:00:00+00:00"


# -- pipes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["sessions", "list", "--json"], ["costs"]])
def test_output_into_a_closed_pipe_ends_quietly(sqlite_db, command):
    process = subprocess.Popen(
        [installed_command(), *command, "--db", str(sqlite_db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=command_environment(),
    )
    process.stdout.close()  # the reader is gone before the first write
    stderr = process.stderr.read().decode()
    process.wait()
    assert stderr == ""
    assert process.returncode == 141  # as a command killed by SIGPIPE


def test_json_piped_into_head_prints_no_error(sqlite_db):
    result = subprocess.run(
        f"'{installed_command()}' sessions list --json --db '{sqlite_db}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=command_environment(),
    )
    assert (result.stdout, result.stderr) == ("[\n", "")


# -- costs ------------------------------------------------------------------------------------


def test_costs_fit_an_80_column_terminal_without_cutting_dates_or_amounts(tmp_path):
    path = tmp_path / "wide.db"
    models = ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5"]
    day_costs: dict = {}
    model_costs: dict = {}
    with SessionManager(path) as manager:
        for day in range(12):
            moment = datetime(2026, 3, 1, 12, tzinfo=timezone.utc) + timedelta(days=day)
            with freeze_time(moment):
                session = manager.create_session(Channel.MAIN, f"k{day}", user_id="a-rather-long-user@example.com")
                for turn, model in enumerate(models, 1):
                    cost = 1234.5678 + day * 10 if turn == 1 else 0.5 + day
                    record = UsageRecord(
                        123456789, 98765432, 1234567890, 987654321, cost, model, "a-rather-long-user@example.com"
                    )
                    manager.record_usage(session, record, turn=turn)
                    day_costs[moment.date()] = day_costs.get(moment.date(), 0) + cost
                    model_costs[model] = model_costs.get(model, 0) + cost
    result = run_command("costs", "--db", path, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    for day, cost in day_costs.items():
        [line] = [line for line in lines if line.startswith(day.isoformat())]
        assert line.rstrip().endswith(f"${cost:.4f}")
        assert "█" in line
    for cost in model_costs.values():
        assert f"{cost:.4f}" in result.stdout  # each model's total, in full
    legend = [line for line in lines if line.lstrip().startswith("█ ")]
    assert all(model in " ".join(legend) for model in models)


def test_the_legend_lists_models_in_the_by_model_tables_order(capsys, sqlite_db):
    status, out, _ = run_main(capsys, "costs", "--db", sqlite_db)
    assert status == 0
    table = out[out.index("By model") :]
    assert table.index("alpha-large") < table.index("zeta-small")  # alpha cost more
    [legend] = [line for line in out.splitlines() if line.lstrip().startswith("█ ")]
    assert legend.index("alpha-large") < legend.index("zeta-small")


def test_an_empty_range_says_there_was_no_usage_between_the_two_instants(capsys, sqlite_db):
    status, out, _ = run_main(capsys, "costs", "--since", "2020-01-01", "--until", "2020-02-01", "--db", sqlite_db)
    assert status == 0
    assert "No usage between 2020-01-01T00:00:00+00:00 and 2020-02-01T00:00:00+00:00." in out
    assert "By model" not in out


def test_json_money_values_have_a_stable_precision(capsys, db_target):
    with SessionManager(db_target) as manager:
        session = manager.create_session(Channel.MAIN, "k", user_id="alice")
        manager.record_usage(session, UsageRecord(1, 1, 0, 0, 0.1 + 0.2, "m", "alice"), turn=1)  # a computed price
    status, out, _ = run_main(capsys, "costs", "--json", "--db", db_target)
    assert status == 0
    overview = json.loads(out)["overview"]
    assert (overview["total_cost_usd"], overview["by_day"][0]["total_cost_usd"]) == (0.3, 0.3)
    assert not re.search(r"\d{11,}", out)  # no 0.30000000000000004
    _, shown, _ = run_main(capsys, "sessions", "show", session, "--json", "--db", db_target)
    assert json.loads(shown)["usage"]["total_cost_usd"] == 0.3


# -- help and alembic -------------------------------------------------------------------------


def every_parser(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from every_parser(child)


def test_help_texts_carry_no_restructuredtext_markup():
    parsers = list(every_parser(build_parser()))
    assert len(parsers) >= 9
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text, parser.prog
        assert not re.search(r":[a-z]+:`", text), parser.prog


def test_alembic_from_a_checkout_prints_what_it_does(tmp_path):
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run(
        [str(alembic), "-x", f"db={tmp_path / 'checkout.db'}", "upgrade", "head"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=command_environment(),
    )
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    assert f"-> {head_revision()}" in result.stderr


def test_the_library_and_db_upgrade_migrate_silently(tmp_path):
    program = "import sys; from starpod_session import SessionManager; SessionManager(sys.argv[1]).close()"
    library = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "library.db")], cwd=ROOT, capture_output=True, text=True
    )
    assert (library.returncode, library.stdout, library.stderr) == (0, "", "")
    upgraded = run_command("db", "upgrade", "--db", tmp_path / "command.db")
    assert upgraded.stderr == ""
    assert upgraded.stdout.strip() == f"{tmp_path / 'command.db'}: upgraded from none to {head_revision()}"


def test_a_database_locked_by_another_program_is_one_line_after_lock_timeout(tmp_path):
    database = tmp_path / "locked.db"
    with SessionManager(database) as manager:
        session_id = manager.create_session(Channel.MAIN, "k")
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        listed = run_in_process("sessions", "list", "--json", "--lock-timeout", "0.2", db=database)
        assert [meta["id"] for meta in json.loads(listed.stdout)] == [session_id]  # WAL: readers go on
        written = run_in_process("sessions", "archive", session_id, "--lock-timeout", "0.2", db=database)
        assert_clean_failure(written)
        assert "locked" in written.stderr
    finally:
        holder.close()
    bad = run_in_process("sessions", "list", "--lock-timeout", "-1", db=database)
    assert bad.returncode == 2 and "argument --lock-timeout" in bad.stderr
