"""The Email and Slack channels of the crate (v0.3.2): names, default gaps, the Slack thread key.

The tests named ``test_crate_*`` are the crate's own channel tests
(``crates/starpod-session/src/lib.rs`` and ``crates/starpod-core/src/config.rs``),
ported one for one.
"""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest
from freezegun import freeze_time

from starpod_session import (
    AgentConfig,
    Channel,
    ChannelConfig,
    Continue,
    InvalidInput,
    New,
    TimeGapResolver,
    slack_session_key,
)
from starpod_session.channels import ChannelRegistry

from ..helpers import GAP_T0 as T0
from ..helpers import assert_gap_is

# -- names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "value"),
    [(Channel.MAIN, "main"), (Channel.TELEGRAM, "telegram"), (Channel.EMAIL, "email"), (Channel.SLACK, "slack")],
)
def test_each_channel_stores_the_crates_name(channel, value):
    assert channel.value == value == str(channel)


def test_crate_email_channel_as_str():
    assert Channel.EMAIL.value == "email"


def test_crate_email_channel_from_str():
    assert Channel.from_channel_str("email") is Channel.EMAIL


def test_crate_unknown_channel_defaults_to_main():
    assert Channel.from_channel_str("unknown") is Channel.MAIN
    assert Channel.from_channel_str("") is Channel.MAIN


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("main", Channel.MAIN),
        ("telegram", Channel.TELEGRAM),
        ("email", Channel.EMAIL),
        ("slack", Channel.SLACK),
        # like the crate: exact names only, everything else is main
        ("Slack", Channel.MAIN),
        ("telegram ", Channel.MAIN),
        ("irc", Channel.MAIN),
    ],
)
def test_from_channel_str_maps_like_the_crate(name, channel):
    assert Channel.from_channel_str(name) is channel


@pytest.mark.parametrize("value", [None, 1, b"slack", Channel.SLACK])
def test_from_channel_str_takes_only_a_plain_str(value):
    if isinstance(value, Channel):  # a Channel is a str: it maps to itself
        assert Channel.from_channel_str(value) is value
        return
    with pytest.raises(InvalidInput) as raised:
        Channel.from_channel_str(value)
    assert raised.value.field == "channel"


def test_the_facade_still_refuses_names_no_configuration_defines(manager):
    with pytest.raises(InvalidInput) as raised:
        manager.resolve_session("irc", "k")
    assert raised.value.field == "channel"
    assert all(name in str(raised.value) for name in ("email", "main", "slack", "telegram"))


# -- default gaps -----------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "gap"),
    [(Channel.EMAIL, 1440), ("email", 1440), (Channel.SLACK, 360), ("slack", 360)],
)
def test_email_and_slack_are_time_gap_channels_with_the_crates_default_gaps(manager, channel, gap):
    assert_gap_is(manager, channel, gap)
    assert [meta.channel for meta in manager.list_sessions(10)] == [str(channel)]


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SLACK])
def test_the_per_call_gap_overrides_the_default(manager, channel):
    with freeze_time(T0) as clock:
        session_id = manager.create_session(channel, "k")
        clock.tick(timedelta(minutes=5))
        assert manager.resolve_session(channel, "k", gap_minutes=5) == New(closed_session_id=session_id)


@pytest.mark.parametrize(
    ("section", "channel", "gap"),
    [("email", Channel.EMAIL, 60), ("slack", Channel.SLACK, 30)],
)
def test_agent_toml_sets_the_email_and_slack_gaps(make_manager, tmp_path, section, channel, gap):
    path = tmp_path / "agent.toml"
    path.write_text(f"[channels.{section}]\nenabled = true\ngap_minutes = {gap}\n", encoding="utf-8")
    assert_gap_is(make_manager(config=path), channel, gap)


def test_crate_email_channel_enabled_and_gap_defaults():
    config = AgentConfig.from_document({"channels": {"email": {"enabled": True}}})
    assert config.resolvers() == {"email": TimeGapResolver(1440)}


def test_crate_email_channel_custom_gap_minutes():
    config = AgentConfig.from_document({"channels": {"email": {"gap_minutes": 60}}})
    assert config.resolvers() == {"email": TimeGapResolver(60)}


def test_crate_email_and_telegram_channels_coexist():
    document = {"channels": {"telegram": {"gap_minutes": 360}, "email": {"gap_minutes": 1440}}}
    assert AgentConfig.from_document(document).resolvers() == {
        "telegram": TimeGapResolver(360),
        "email": TimeGapResolver(1440),
    }


def test_crate_slack_defaults_match_telegram():
    document = {"channels": {"slack": {"enabled": True}, "telegram": {}}}
    assert AgentConfig.from_document(document).resolvers() == {
        "slack": TimeGapResolver(360),
        "telegram": TimeGapResolver(360),
    }


def test_a_config_object_without_a_gap_takes_the_channels_default():
    config = AgentConfig({"email": ChannelConfig(), "support": ChannelConfig()})
    assert config.resolvers() == {"email": TimeGapResolver(1440), "support": TimeGapResolver(360)}


# -- the crate's email session tests -----------------------------------------


def test_crate_create_email_session(manager):
    session_id = manager.create_session(Channel.EMAIL, "user@example.com")
    session = manager.get_session(session_id)
    assert session.channel == "email"
    assert session.channel_session_key == "user@example.com"


def test_crate_resolve_email_session_continues_for_same_sender(manager):
    session_id = manager.create_session(Channel.EMAIL, "sender@test.com")
    manager.touch_session(session_id)
    assert manager.resolve_session(Channel.EMAIL, "sender@test.com") == Continue(session_id)


def test_crate_resolve_email_session_new_for_different_sender(manager):
    session_id = manager.create_session(Channel.EMAIL, "sender-a@test.com")
    manager.touch_session(session_id)
    assert manager.resolve_session(Channel.EMAIL, "sender-b@test.com") == New(closed_session_id=None)


def test_crate_email_and_telegram_sessions_are_separate(manager):
    email_id = manager.create_session(Channel.EMAIL, "user@test.com")
    telegram_id = manager.create_session(Channel.TELEGRAM, "user@test.com")
    assert email_id != telegram_id
    manager.touch_session(email_id)
    manager.touch_session(telegram_id)
    assert manager.resolve_session(Channel.EMAIL, "user@test.com") == Continue(email_id)
    assert manager.resolve_session(Channel.TELEGRAM, "user@test.com") == Continue(telegram_id)


def test_sessions_list_by_the_new_channels(manager):
    email_id = manager.create_session(Channel.EMAIL, "user@test.com")
    slack_id = manager.create_session("slack", slack_session_key("T1", "C1", ts="1700000000.000100"))
    manager.create_session(Channel.MAIN, "web")
    assert [meta.id for meta in manager.list_sessions(10, channel=Channel.EMAIL)] == [email_id]
    assert [meta.id for meta in manager.list_sessions(10, channel="slack")] == [slack_id]


# -- the Slack thread key ----------------------------------------------------


def test_a_top_level_message_keys_its_own_thread():
    assert slack_session_key("T0001", "C024BE91L", ts="1700000000.000100") == "T0001:C024BE91L:1700000000.000100"


def test_a_reply_keys_the_thread_it_belongs_to():
    key = slack_session_key("T0001", "C024BE91L", ts="1700000050.000200", thread_ts="1700000000.000100")
    assert key == "T0001:C024BE91L:1700000000.000100"


def test_one_slack_session_per_thread(manager):
    root = slack_session_key("T1", "C1", ts="1700000000.000100")
    with freeze_time(T0) as clock:
        first = manager.open_session(Channel.SLACK, root).session_id
        clock.tick(timedelta(minutes=10))
        reply = slack_session_key("T1", "C1", ts="1700000600.000300", thread_ts="1700000000.000100")
        assert manager.open_session(Channel.SLACK, reply) == manager.open_session(Channel.SLACK, root)
        assert manager.resolve_session(Channel.SLACK, reply) == Continue(first)
        other_thread = slack_session_key("T1", "C1", ts="1700000700.000400")
        second = manager.open_session(Channel.SLACK, other_thread)
        assert second.created and second.session_id != first
        other_channel = slack_session_key("T1", "C2", ts="1700000000.000100")
        assert manager.resolve_session(Channel.SLACK, other_channel) == New(closed_session_id=None)
        # the 360-minute gap applies per thread
        clock.tick(timedelta(minutes=360))
        assert manager.resolve_session(Channel.SLACK, reply) == New(closed_session_id=first)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("", "C1"), "team_id"),
        (("T:1", "C1"), "team_id"),
        ((None, "C1"), "team_id"),
        (("T1", ""), "channel_id"),
        (("T1", "C 1"), "channel_id"),
        (("T1", "C1:x"), "channel_id"),
        (("T1", "C" * 65), "channel_id"),
    ],
)
def test_a_bad_slack_id_is_invalid_input(arguments, field):
    with pytest.raises(InvalidInput) as raised:
        slack_session_key(*arguments, ts="1700000000.000100")
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("stamps", "field"),
    [
        ({"ts": ""}, "ts"),
        ({"ts": "1700000000"}, "ts"),
        ({"ts": "abc.def"}, "ts"),
        ({"ts": 1700000000.0001}, "ts"),  # a float has lost Slack's six digits: refused, not rounded
        ({"ts": "1700000000.000100", "thread_ts": ""}, "thread_ts"),
        ({"ts": "1700000000.000100", "thread_ts": "1700000000.000100:x"}, "thread_ts"),
        ({"ts": "1700000000.000100", "thread_ts": 1700000000}, "thread_ts"),
    ],
)
def test_a_bad_slack_timestamp_is_invalid_input(stamps, field):
    with pytest.raises(InvalidInput) as raised:
        slack_session_key("T1", "C1", **stamps)
    assert raised.value.field == field
    assert "1700000000.000100" in str(raised.value)  # the message shows the expected shape


def test_a_time_gap_resolver_is_its_gap_and_nothing_else():
    resolver = TimeGapResolver(60)
    assert resolver == TimeGapResolver(60) and hash(resolver) == hash(TimeGapResolver(60))
    assert repr(resolver) == "TimeGapResolver(gap_minutes=60)"
    shorter = attrs.evolve(resolver, gap_minutes=1)
    assert shorter.is_stale(T0, T0 + timedelta(minutes=1), None)
    assert not resolver.is_stale(T0, T0 + timedelta(minutes=59), None)
    assert resolver.is_stale(T0, T0 + timedelta(minutes=59), 59)  # the per-call gap wins


def test_a_gap_no_timedelta_holds_fails_when_tested_not_when_made():
    resolver = TimeGapResolver(10**13)
    with pytest.raises(OverflowError):
        resolver.is_stale(T0, T0, None)
    assert not resolver.is_stale(T0, T0, 1)


class _Name(str):
    pass


def test_a_channel_is_named_by_its_member_its_name_or_a_str_subclass_of_it():
    registry = ChannelRegistry()
    assert type(registry.channel_name(Channel.TELEGRAM)) is str
    assert registry.channel_name(Channel.TELEGRAM) == registry.channel_name("telegram") == "telegram"
    assert registry.channel_name(_Name("email")) == "email"
    for unknown in (_Name("nope"), "nope", 3, ["main"]):
        with pytest.raises(InvalidInput):
            registry.channel_name(unknown)
