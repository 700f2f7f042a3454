"""``starpod-session sessions list | show`` and ``costs``, run as an operator runs them.

In-process (``main(argv)``); what only a process shows is in test_command.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel, SessionManager, UsageRecord

from .run import as_json, assert_clean_failure, formatting_only
from .run import run_in_process as cli

NOW = datetime.now(timezone.utc)


@pytest.fixture
def populated(db_target, tmp_path):
    """Three sessions and usage on three days: 10 days ago, 2 days ago, and today."""
    with SessionManager(db_target, tmp_path / "sessions") as manager:
        with freeze_time(NOW - timedelta(days=10)):
            old = manager.create_session(Channel.TELEGRAM, "chat-1", user_id="alice")
            manager.save_message(old, "user", "Plan a weekend in Lisbon")
            manager.save_message(old, "assistant", "Sure: [bold]Alfama[/bold] first.")
            manager.record_usage(old, UsageRecord(100, 10, 1000, 0, 1.0, "opus", "alice"), turn=1)
            manager.close_session(old, "Weekend planned")
        with freeze_time(NOW - timedelta(days=2)):
            bob = manager.create_session(Channel.MAIN, "web", user_id="bob")
            manager.save_message(bob, "user", "Summarise my inbox")
            manager.record_usage(bob, UsageRecord(200, 20, 0, 50, 0.5, "sonnet", "bob"), turn=1)
            manager.mark_read(bob, False)
        with freeze_time(NOW - timedelta(minutes=1)):
            today = manager.create_session(Channel.MAIN, "cli", user_id="alice")
            manager.record_usage(today, UsageRecord(300, 30, 0, 0, 0.25, "opus", "alice"), turn=1)
    return {"old": old, "bob": bob, "today": today, "db": db_target}


def listed(populated, *arguments):
    names = {value: name for name, value in populated.items()}
    return [names[row["id"]] for row in as_json(cli("sessions", "list", "--json", *arguments, db=populated["db"]))]


def test_sessions_list_json_with_every_filter(populated):
    assert listed(populated) == ["today", "bob", "old"]
    assert listed(populated, "--user", "alice") == ["today", "old"]
    assert listed(populated, "--channel", "telegram") == ["old"]
    assert listed(populated, "--open") == ["today", "bob"]
    assert listed(populated, "--closed") == ["old"]
    assert listed(populated, "--unread") == ["bob"]
    assert listed(populated, "--limit", "1") == ["today"]
    [row] = as_json(cli("sessions", "list", "--json", "--closed", db=populated["db"]))
    assert row["summary"] == "Weekend planned" and row["title"] == "Plan a weekend in Lisbon"
    assert datetime.fromisoformat(row["last_message_at"]).tzinfo is not None


def test_sessions_list_prints_a_table(backend, populated):
    formatting_only(backend)
    result = cli("sessions", "list", "--db", populated["db"])
    assert result.returncode == 0, result.stderr
    assert "3 session(s)" in result.stdout
    assert populated["old"][:8] in result.stdout and "Plan a weekend in Lisbon" in result.stdout
    assert "open, unread" in result.stdout and "telegram/chat-1" in result.stdout


def test_sessions_show_prints_metadata_usage_and_the_transcript(backend, populated):
    formatting_only(backend)
    result = cli("sessions", "show", populated["old"], db=populated["db"])
    assert result.returncode == 0, result.stderr
    for expected in ("Plan a weekend in Lisbon", "Weekend planned", "telegram (key chat-1)", "$1.0000 over 1 turns"):
        assert expected in result.stdout
    # Message text is printed as it is, never read as rich markup.
    assert "Sure: [bold]Alfama[/bold] first." in result.stdout
    assert result.stdout.index("user ·") < result.stdout.index("assistant ·")


def test_sessions_show_takes_a_short_id_and_last_n_messages(populated):
    shown = as_json(cli("sessions", "show", populated["old"][:8], "--last", "1", "--json", db=populated["db"]))
    assert shown["session"]["id"] == populated["old"]
    assert [m["content"] for m in shown["messages"]] == ["Sure: [bold]Alfama[/bold] first."]
    assert shown["usage"]["total_cost_usd"] == 1.0 and shown["usage"]["total_cache_read"] == 1000


def test_costs_since_7d_json(populated):
    report = as_json(cli("costs", "--since", "7d", "--json", db=populated["db"]))
    overview = report["overview"]
    assert overview["total_cost_usd"] == 0.75 and overview["total_turns"] == 2
    assert [(u["user_id"], u["total_cost_usd"]) for u in overview["by_user"]] == [("bob", 0.5), ("alice", 0.25)]
    assert [(m["model"], m["total_cache_write"]) for m in overview["by_model"]] == [("sonnet", 50), ("opus", 0)]
    days = [(d["day"], d["model"]) for d in overview["by_day"]]
    assert days == [
        ((NOW - timedelta(days=2)).date().isoformat(), "sonnet"),
        ((NOW - timedelta(minutes=1)).date().isoformat(), "opus"),
    ]
    assert datetime.fromisoformat(report["since"]) < NOW - timedelta(days=6)


def test_costs_between_dates_until_exclusive(populated):
    start = (NOW - timedelta(days=10)).date()
    report = as_json(
        cli(
            "costs",
            "--since",
            start.isoformat(),
            "--until",
            (start + timedelta(days=1)).isoformat(),
            "--json",
            db=populated["db"],
        )
    )
    assert report["overview"]["total_cost_usd"] == 1.0
    assert report["since"] == f"{start.isoformat()}T00:00:00+00:00"
    everything = as_json(cli("costs", "--json", db=populated["db"]))["overview"]
    assert everything["total_cost_usd"] == 1.75 and len(everything["by_day"]) == 3


def test_costs_prints_tables_and_a_per_day_bar_chart(backend, populated):
    formatting_only(backend)
    result = cli("costs", "--since", "30d", db=populated["db"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Total $1.7500 over 3 turns" in out
    assert "By user" in out and "By model" in out and "Cost per day (UTC)" in out
    chart = out[out.index("Cost per day") :].splitlines()[1:]
    bars = {line.split()[0]: line.count("█") for line in chart if line.strip()[:4].isdigit()}
    old_day = (NOW - timedelta(days=10)).date().isoformat()
    assert len(bars) >= 10  # every day from the first to the last, empty ones included
    assert bars[old_day] == 40  # the most expensive day is the full width
    assert min(bars.values()) == 0


def test_channels_from_agent_toml_need_config(backend, db_target, tmp_path):
    formatting_only(backend)
    config = tmp_path / "agent.toml"
    config.write_text("[channels.discord]\ngap_minutes = 5\n")
    with SessionManager(db_target, config=config) as manager:
        manager.create_session("discord", "C1")
    unknown = cli("sessions", "list", "--channel", "discord", db=db_target)
    assert unknown.returncode == 2 and "argument --channel: unknown channel 'discord'" in unknown.stderr
    assert (
        len(as_json(cli("sessions", "list", "--channel", "discord", "--config", config, "--json", db=db_target))) == 1
    )


def test_errors_are_one_line_without_a_traceback(backend, populated, tmp_path):
    formatting_only(backend)
    missing = tmp_path / "missing.db"
    for arguments, words in [
        (("sessions", "list"), "say which database"),
        (("sessions", "list", "--db", missing), "no database file"),
        (("costs", "--db", missing), "no database file"),
        (("sessions", "show", "nope", "--db", populated["db"]), "no session with id 'nope'"),
        (("sessions", "list", "--config", tmp_path / "nope.toml", "--db", populated["db"]), "invalid configuration"),
    ]:
        result = cli(*arguments)
        assert_clean_failure(result)
        assert words in result.stderr, (arguments, result.stderr)
    assert not missing.exists()


def test_bad_values_exit_2_naming_the_flag(backend, populated):
    formatting_only(backend)
    for arguments, words in [
        (("costs", "--since", "yesterday"), "argument --since: 'yesterday' is not a time"),
        (("costs", "--since", "2026-02-30"), "argument --since: '2026-02-30' is not a time"),
        (("costs", "--since", "1d", "--until", "2d"), "argument --until:"),
        (("sessions", "list", "--limit", "-1"), "argument --limit:"),
        (("sessions", "list", "--channel", "irc"), "argument --channel: unknown channel"),
    ]:
        result = cli(*arguments, "--db", populated["db"])
        assert result.returncode == 2, result
        assert words in result.stderr, (arguments, result.stderr)


def test_a_database_behind_head_is_not_migrated_by_a_read_command(tmp_path):
    db = tmp_path / "behind.db"
    assert cli("db", "upgrade", "--db", db, "--revision", "0001").returncode == 0
    result = cli("sessions", "list", db=db)
    assert_clean_failure(result)
    assert "starpod-session db upgrade" in result.stderr


def test_an_ambiguous_short_id_is_refused(backend, tmp_path):
    formatting_only(backend)
    db = tmp_path / "many.db"
    with SessionManager(db) as manager:
        ids = [manager.create_session(Channel.MAIN, f"k{n}") for n in range(17)]  # 17 ids, 16 first characters
    first = next(i[0] for i in ids if sum(other[0] == i[0] for other in ids) > 1)
    result = cli("sessions", "show", first, db=db)
    assert_clean_failure(result)
    assert "the start of several session ids" in result.stderr
