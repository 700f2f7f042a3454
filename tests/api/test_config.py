"""agent.toml: channel gaps, further time-gap channels, the daily reset, and every bad-config case."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from starpod_session import (
    AgentConfig,
    Channel,
    ChannelConfig,
    ConfigError,
    Continue,
    DailyResetResolver,
    InvalidInput,
    New,
    SessionManager,
    StarpodSessionError,
    TimeGapResolver,
)

from ..helpers import assert_gap_is

UTC = timezone.utc
ROME = ZoneInfo("Europe/Rome")
T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=UTC)


def write_config(tmp_path, text):
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def decisions_after(manager, channel, minutes, **options):
    """Open a session at T0, then resolve it ``minutes`` later."""
    with freeze_time(T0) as clock:
        opened = manager.open_session(channel, "k", **options)
        clock.tick(timedelta(minutes=minutes))
        return opened.session_id, manager.resolve_session(channel, "k", **options)


# -- good configurations ----------------------------------------------------


def test_telegram_gap_comes_from_agent_toml(make_manager, tmp_path):
    manager = make_manager(config=write_config(tmp_path, "[channels.telegram]\ngap_minutes = 30\n"))
    session_id, decision = decisions_after(manager, Channel.TELEGRAM, 29)
    assert decision == Continue(session_id)
    with freeze_time(T0 + timedelta(minutes=30)):  # resolving is not activity: still 30 minutes since T0
        assert manager.resolve_session(Channel.TELEGRAM, "k") == New(closed_session_id=session_id)


def test_further_sections_define_time_gap_channels_usable_by_name(make_manager, tmp_path):
    path = write_config(
        tmp_path,
        """
[agent]               # the rest of agent.toml is not ours to judge
name = "starpod"
[channels.discord]
gap_minutes = 10
[channels.whatsapp]   # no gap given: 360 minutes, as for Telegram
""",
    )
    manager = make_manager(config=str(path))
    discord_id, decision = decisions_after(manager, "discord", 10)
    assert decision == New(closed_session_id=discord_id)
    assert manager.get_session(discord_id).channel == "discord"
    whatsapp_id, decision = decisions_after(manager, "whatsapp", 359)
    assert decision == Continue(whatsapp_id)
    assert [meta.id for meta in manager.list_sessions(10, channel="whatsapp")] == [whatsapp_id]
    with pytest.raises(InvalidInput) as raised:
        manager.resolve_session("irc", "k")
    assert raised.value.field == "channel" and "discord" in str(raised.value) and "whatsapp" in str(raised.value)


def test_a_config_object_works_like_the_file(make_manager):
    manager = make_manager(config=AgentConfig({"slack": ChannelConfig(gap_minutes=5)}))
    session_id, decision = decisions_after(manager, "slack", 5)
    assert decision == New(closed_session_id=session_id)
    assert manager.config.channels["slack"].gap_minutes == 5


def test_the_per_call_gap_and_explicit_resolvers_win_over_the_file(make_manager, tmp_path):
    path = write_config(tmp_path, "[channels.slack]\ngap_minutes = 5\n")
    manager = make_manager(config=path, channels={"slack": TimeGapResolver(100)})
    session_id, decision = decisions_after(manager, "slack", 99)
    assert decision == Continue(session_id)
    with freeze_time(T0 + timedelta(minutes=99)):
        assert manager.resolve_session("slack", "k", gap_minutes=1) == New(closed_session_id=session_id)


def test_no_config_keeps_the_built_in_channels(manager):
    session_id, decision = decisions_after(manager, Channel.TELEGRAM, 359)
    assert decision == Continue(session_id)
    with pytest.raises(InvalidInput):
        manager.resolve_session("discord", "k")


def test_a_config_of_the_wrong_type_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput) as raised:
        SessionManager(tmp_path / "s.db", config={"channels": {}})
    assert raised.value.field == "config"


# -- a real agent.toml -------------------------------------------------------

REAL_AGENT_TOML = Path(__file__).resolve().parents[1] / "fixtures" / "agent.toml"

#: Every key the crate has ever read from a [channels.*] section (crates/starpod-core/src/config.rs).
UPSTREAM_CHANNEL_KEYS = {
    "enabled": "true",
    "gap_minutes": "30",
    "stream_mode": '"all_messages"',
    "allowed_users": "[123456789]",
    "bot_token": '"123456:ABC"',
}


def test_a_real_agent_toml_loads_with_every_channels_gap():
    config = AgentConfig.from_toml(REAL_AGENT_TOML)
    assert config.resolvers() == {
        "telegram": TimeGapResolver(240),
        "slack": TimeGapResolver(90),
        "email": TimeGapResolver(1440),
    }


def test_a_manager_runs_on_a_real_agent_toml(make_manager):
    manager = make_manager(config=REAL_AGENT_TOML)
    for channel, gap in ((Channel.TELEGRAM, 240), (Channel.SLACK, 90), (Channel.EMAIL, 1440)):
        assert_gap_is(manager, channel, gap)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        (section, key)
        for section in ("telegram", "slack", "email", "main", "discord")
        for key in sorted(UPSTREAM_CHANNEL_KEYS)
        if (section, key) != ("main", "gap_minutes")  # main takes no gap: a bad configuration
    ],
)
def test_the_crates_channel_keys_are_never_refused(tmp_path, section, key):
    path = write_config(tmp_path, f"[channels.{section}]\n{key} = {UPSTREAM_CHANNEL_KEYS[key]}\n")
    assert section in AgentConfig.from_toml(path).resolvers()


@pytest.mark.parametrize("key", ["webhook_url", "parse_mode", "signing_secret", "imap_host", "polling", "reset"])
def test_keys_of_other_parts_of_the_agent_are_ignored(tmp_path, key):
    path = write_config(
        tmp_path, f'[channels.telegram]\ngap_minutes = 30\n{key} = "x"\n[channels.telegram.extra]\nany = 1\n'
    )
    assert AgentConfig.from_toml(path).resolvers() == {"telegram": TimeGapResolver(30)}


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("gap_minute", "gap_minutes"),
        ("gapminutes", "gap_minutes"),
        ("gap-minutes", "gap_minutes"),
        ("Gap_Minutes", "gap_minutes"),
        ("gap_mins", "gap_minutes"),
        ("gap", "gap_minutes"),
        ("reset_hour", "reset_at_hour"),
        ("reset_at_hours", "reset_at_hour"),
        ("resetathour", "reset_at_hour"),
        ("timezone", "tz"),
        ("time_zone", "tz"),
        ("TZ", "tz"),
    ],
)
@pytest.mark.parametrize("section", ["telegram", "slack", "email"])
def test_a_near_miss_of_our_keys_is_a_config_error_saying_what_was_meant(tmp_path, section, key, meant):
    path = write_config(tmp_path, f'[channels.{section}]\nenabled = true\nbot_token = "123456:SECRET"\n"{key}" = 30\n')
    with pytest.raises(ConfigError) as raised:
        SessionManager(tmp_path / "sessions.db", config=path)
    error = raised.value
    assert (error.path, error.section, error.key) == (str(path), f"channels.{section}", key)
    assert f"did you mean {meant}?" in error.reason
    assert f"[channels.{section}] {key}" in str(error)
    assert "SECRET" not in str(error)
    assert not (tmp_path / "sessions.db").exists()


def test_a_near_miss_in_the_real_file_is_caught(tmp_path):
    text = REAL_AGENT_TOML.read_text(encoding="utf-8").replace("gap_minutes = 90", "gap_minute = 90")
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        AgentConfig.from_toml(path)
    assert (raised.value.section, raised.value.key) == ("channels.slack", "gap_minute")


# -- bad configurations -----------------------------------------------------

BAD = [
    # id, file content, section, key, words in the reason
    ("not-toml", "[channels.telegram\n", None, None, "not valid TOML"),
    ("channels-not-a-table", "channels = 3\n", "channels", None, "table"),
    ("section-not-a-table", "[channels]\ntelegram = 30\n", "channels.telegram", None, "table"),
    ("near-miss-key", "[channels.telegram]\ngap_minute = 30\n", "channels.telegram", "gap_minute", "did you mean"),
    ("gap-negative", "[channels.telegram]\ngap_minutes = -1\n", "channels.telegram", "gap_minutes", "non-negative"),
    ("gap-float", "[channels.slack]\ngap_minutes = 30.0\n", "channels.slack", "gap_minutes", "int"),
    ("gap-string", '[channels.slack]\ngap_minutes = "30"\n', "channels.slack", "gap_minutes", "int"),
    ("gap-bool", "[channels.slack]\ngap_minutes = true\n", "channels.slack", "gap_minutes", "int"),
    ("gap-on-main", "[channels.main]\ngap_minutes = 30\n", "channels.main", "gap_minutes", "main"),
    ("reset-24", "[channels.telegram]\nreset_at_hour = 24\n", "channels.telegram", "reset_at_hour", "0..23"),
    ("reset-negative", "[channels.telegram]\nreset_at_hour = -1\n", "channels.telegram", "reset_at_hour", "0..23"),
    ("reset-string", '[channels.telegram]\nreset_at_hour = "4"\n', "channels.telegram", "reset_at_hour", "0..23"),
    (
        "tz-unknown",
        '[channels.telegram]\nreset_at_hour = 4\ntz = "Europe/Atlantis"\n',
        "channels.telegram",
        "tz",
        "Atlantis",
    ),
    ("tz-not-a-string", "[channels.telegram]\nreset_at_hour = 4\ntz = 1\n", "channels.telegram", "tz", "IANA"),
    ("tz-without-reset", '[channels.telegram]\ntz = "Europe/Rome"\n', "channels.telegram", "tz", "reset_at_hour"),
    ("bad-channel-name", '[channels."my channel"]\ngap_minutes = 5\n', "channels.my channel", None, "channel name"),
    ("channel-name-too-long", f"[channels.{'x' * 65}]\n", f"channels.{'x' * 65}", None, "1-64"),
]


@pytest.mark.parametrize(("content", "section", "key", "reason"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_a_bad_agent_toml_is_a_config_error_naming_file_section_and_key(tmp_path, content, section, key, reason):
    path = write_config(tmp_path, content)
    with pytest.raises(ConfigError) as raised:
        SessionManager(tmp_path / "sessions.db", config=path)
    error = raised.value
    assert isinstance(error, StarpodSessionError)
    assert (error.path, error.section, error.key) == (str(path), section, key)
    assert reason in error.reason
    assert str(path) in str(error)
    if section is not None:
        assert f"[{section}]" in str(error)
    assert not (tmp_path / "sessions.db").exists()  # refused before the database is touched


def test_a_missing_agent_toml_is_a_config_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError) as raised:
        SessionManager(tmp_path / "sessions.db", config=tmp_path / "nope.toml")
    assert raised.value.path == str(tmp_path / "nope.toml")
    assert "cannot read" in str(raised.value)


def test_a_bad_config_object_is_refused_when_built():
    with pytest.raises(InvalidInput) as raised:
        ChannelConfig(reset_at_hour=25)
    assert raised.value.field == "reset_at_hour"
    with pytest.raises(ConfigError) as raised:
        AgentConfig({"main": ChannelConfig(gap_minutes=5)})
    assert (raised.value.section, raised.value.key) == ("channels.main", "gap_minutes")


# -- the daily reset --------------------------------------------------------


def rome(*fields, fold=0):
    return datetime(*fields, tzinfo=ROME, fold=fold).astimezone(UTC)


@pytest.mark.parametrize(
    ("hour", "now", "expected"),
    [
        # an ordinary day: today's 04:00 once past it, else yesterday's
        (4, rome(2026, 3, 20, 4, 0), rome(2026, 3, 20, 4, 0)),
        (4, rome(2026, 3, 20, 3, 59, 59), rome(2026, 3, 19, 4, 0)),
        (0, rome(2026, 3, 20, 0, 0), rome(2026, 3, 20, 0, 0)),
        (23, rome(2026, 3, 20, 22, 0), rome(2026, 3, 19, 23, 0)),
        # spring forward (29 March 2026, 02:00 CET -> 03:00 CEST): 04:00 is 02:00 UTC ...
        (4, datetime(2026, 3, 29, 2, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC)),
        (4, datetime(2026, 3, 29, 1, 59, tzinfo=UTC), datetime(2026, 3, 28, 3, 0, tzinfo=UTC)),
        # ... and 02:00 does not exist: the reset is the jump itself, 01:00 UTC
        (2, datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (2, datetime(2026, 3, 29, 0, 59, tzinfo=UTC), datetime(2026, 3, 28, 1, 0, tzinfo=UTC)),
        # fall back (25 October 2026, 03:00 CEST -> 02:00 CET): 02:00 happens twice, the first counts
        (2, datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 0, tzinfo=UTC)),
        (2, rome(2026, 10, 25, 2, 30, fold=1), datetime(2026, 10, 25, 0, 0, tzinfo=UTC)),
        (4, datetime(2026, 10, 25, 3, 0, tzinfo=UTC), datetime(2026, 10, 25, 3, 0, tzinfo=UTC)),
        (4, datetime(2026, 10, 25, 2, 59, tzinfo=UTC), datetime(2026, 10, 24, 2, 0, tzinfo=UTC)),
    ],
)
def test_the_reset_boundary_is_the_latest_local_hour_at_or_before_now(hour, now, expected):
    resolver = DailyResetResolver(TimeGapResolver(10**6), hour, ROME)
    assert resolver.last_reset(now) == expected


def reset_manager(make_manager, tmp_path, channel="telegram", hour=4, gap="gap_minutes = 100000\n"):
    text = f'[channels.{channel}]\n{gap}reset_at_hour = {hour}\ntz = "Europe/Rome"\n'
    return make_manager(config=write_config(tmp_path, text))


@pytest.mark.parametrize(
    ("last_active", "resolved", "continues"),
    [
        (rome(2026, 3, 20, 3, 59), rome(2026, 3, 20, 3, 59, 59), True),
        (rome(2026, 3, 20, 3, 59), rome(2026, 3, 20, 4, 0), False),
        (rome(2026, 3, 20, 4, 0), rome(2026, 3, 21, 3, 59), True),  # the boundary itself is after the reset
        (rome(2026, 3, 19, 23, 0), rome(2026, 3, 20, 8, 0), False),
        # spring forward: 04:00 CEST is 02:00 UTC, only 23 hours after the previous reset
        (datetime(2026, 3, 29, 1, 59, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC), False),
        (datetime(2026, 3, 28, 3, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 59, tzinfo=UTC), True),
        # fall back: 04:00 CET is 03:00 UTC, 25 hours after the previous reset
        (datetime(2026, 10, 25, 2, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 59, tzinfo=UTC), True),
        (datetime(2026, 10, 25, 2, 30, tzinfo=UTC), datetime(2026, 10, 25, 3, 0, tzinfo=UTC), False),
    ],
)
def test_a_session_last_active_before_the_reset_is_auto_closed(
    make_manager, tmp_path, last_active, resolved, continues
):
    manager = reset_manager(make_manager, tmp_path)
    with freeze_time(last_active):
        session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
    with freeze_time(resolved):
        decision = manager.resolve_session(Channel.TELEGRAM, "k")
    assert decision == (Continue(session_id) if continues else New(closed_session_id=session_id))
    assert manager.get_session(session_id).is_closed is not continues


def test_the_gap_still_applies_with_a_daily_reset(make_manager, tmp_path):
    manager = reset_manager(make_manager, tmp_path, gap="gap_minutes = 30\n")
    with freeze_time(rome(2026, 3, 20, 10, 0)):
        session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
    with freeze_time(rome(2026, 3, 20, 10, 30)):
        assert manager.resolve_session(Channel.TELEGRAM, "k") == New(closed_session_id=session_id)


def test_main_sessions_can_reset_daily_too(make_manager, tmp_path):
    manager = reset_manager(make_manager, tmp_path, channel="main", gap="")
    with freeze_time(rome(2026, 3, 20, 23, 0)):
        session_id = manager.open_session(Channel.MAIN, "k").session_id
    with freeze_time(rome(2026, 3, 21, 3, 59)):
        assert manager.resolve_session(Channel.MAIN, "k") == Continue(session_id)
    with freeze_time(rome(2026, 3, 21, 4, 0)):
        opened = manager.open_session(Channel.MAIN, "k")
    assert opened.closed_session_id == session_id and opened.created


def test_reset_defaults_to_utc(make_manager, tmp_path):
    manager = make_manager(config=AgentConfig({"slack": ChannelConfig(reset_at_hour=0)}))
    with freeze_time(datetime(2026, 3, 20, 23, 59, tzinfo=UTC)):
        session_id = manager.open_session("slack", "k").session_id
    with freeze_time(datetime(2026, 3, 21, 0, 0, tzinfo=UTC)):
        assert manager.resolve_session("slack", "k") == New(closed_session_id=session_id)
