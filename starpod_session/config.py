"""The agent's configuration: the ``[channels.*]`` sections of ``agent.toml``.

``agent.toml`` belongs to the whole agent; only its ``[channels]`` table is read
here, and every other table is left to the rest of the agent. Inside it:

- ``gap_minutes = N`` in ``[channels.telegram]``, ``[channels.email]`` or
  ``[channels.slack]`` sets that channel's inactivity gap (the crate's
  ``SlackChannelConfig`` & co. spell it the same way);
- any other ``[channels.NAME]`` section defines a further time-gap channel;
- ``reset_at_hour = H`` (0-23) with an optional ``tz = "Area/City"`` (default UTC)
  also ends every session of the channel daily at that local hour;
- ``[channels.main]`` may take the daily reset but no gap (main sessions last
  until closed).

The same sections hold keys of the rest of the agent (``enabled``,
``stream_mode``, ...): those are ignored. A key that looks like a misspelling of
ours (``gap_minute``, ``timezone``) is an error saying what it probably meant:
a typo in a gap must not silently leave the default in force.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from .channels import (
    DEFAULT_GAP_MINUTES,
    TELEGRAM_GAP_MINUTES,
    Channel,
    ChannelResolver,
    DailyResetResolver,
    ExplicitResolver,
    TimeGapResolver,
    check_gap_minutes,
)
from .errors import ConfigError, InvalidInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["AgentConfig", "ChannelConfig", "load_config"]

#: Channel names as they may appear in ``[channels.NAME]`` and in the ``channel`` column.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_reset_hour(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (type(value) is not int or not 0 <= value <= 23):
        raise InvalidInput("reset_at_hour", f"expected an int hour in 0..23, got {value!r}")


def _check_gap(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_gap_minutes(value)


def _check_tz(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _zone(value)


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str):
        raise InvalidInput("tz", f"expected an IANA time zone name such as 'Europe/Rome', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("tz", f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Rome')") from None


@attrs.frozen
class ChannelConfig:
    """The settings of one channel; validated when constructed (``InvalidInput`` naming the key).

    ``gap_minutes`` is the inactivity gap of a time-gap channel (``None``: the
    channel's default, 1440 minutes for ``email``, else 360); ``reset_at_hour`` and ``tz`` add a daily
    reset at that local hour.
    """

    gap_minutes: int | None = attrs.field(default=None, validator=_check_gap)
    reset_at_hour: int | None = attrs.field(default=None, validator=_check_reset_hour)
    tz: str | None = attrs.field(default=None, validator=_check_tz)

    def __attrs_post_init__(self) -> None:
        if self.tz is not None and self.reset_at_hour is None:
            raise InvalidInput("tz", "only applies to a daily reset: set reset_at_hour too")

    def resolver(self, name: str) -> ChannelResolver:
        """The resolver of channel ``name`` under these settings."""
        if name == Channel.MAIN.value:
            if self.gap_minutes is not None:
                raise InvalidInput("gap_minutes", "main sessions last until closed; main takes no gap")
            resolver: ChannelResolver = ExplicitResolver()
        else:
            default = DEFAULT_GAP_MINUTES.get(name, TELEGRAM_GAP_MINUTES)
            resolver = TimeGapResolver(default if self.gap_minutes is None else self.gap_minutes)
        if self.reset_at_hour is None:
            return resolver
        return DailyResetResolver(resolver, self.reset_at_hour, _zone(self.tz or "UTC"))


@attrs.frozen
class AgentConfig:
    """What the library reads from the agent's configuration: its channels, by name."""

    channels: Mapping[str, ChannelConfig] = attrs.field(factory=dict, converter=dict)
    #: Where the configuration came from, for error messages.
    source: str = "<config>"

    def __attrs_post_init__(self) -> None:
        self.resolvers()  # refuse a bad name or a gap on main now, not at first use

    def resolvers(self) -> dict[str, ChannelResolver]:
        """The resolver of every configured channel, by name."""
        resolvers: dict[str, ChannelResolver] = {}
        for name, channel in self.channels.items():
            section = f"channels.{name}"
            if not isinstance(name, str) or not _CHANNEL_NAME.fullmatch(name):
                raise ConfigError(self.source, section, None, "a channel name is 1-64 letters, digits, '_' or '-'")
            if not isinstance(channel, ChannelConfig):
                raise ConfigError(self.source, section, None, f"expected a ChannelConfig, got {type(channel).__name__}")
            try:
                resolvers[name] = channel.resolver(name)
            except InvalidInput as error:
                raise ConfigError(self.source, section, error.field, error.reason) from None
        return resolvers

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> AgentConfig:
        """Read the ``[channels]`` table of an ``agent.toml`` file; ``ConfigError`` says what is wrong."""
        source = str(path)
        try:
            with open(path, "rb") as file:
                document = tomllib.load(file)
        except OSError as error:
            raise ConfigError(source, None, None, f"cannot read the file: {error.strerror or error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(source, None, None, f"not valid TOML: {error}") from None
        return cls.from_document(document, source)

    @classmethod
    def from_document(cls, document: Mapping[str, object], source: str = "<config>") -> AgentConfig:
        """Build from a parsed TOML document (only its ``channels`` table is read)."""
        table = document.get("channels", {})
        if not isinstance(table, Mapping):
            raise ConfigError(source, "channels", None, "expected a table of [channels.NAME] sections")
        channels = {}
        for name, section in table.items():
            channels[name] = _channel_config(source, f"channels.{name}", section)
        return cls(channels, source)


_CHANNEL_KEYS = tuple(attribute.name for attribute in attrs.fields(ChannelConfig))

#: Keys the crate reads (or once read) from its ``[channels.*]`` sections for the
#: rest of the agent (crates/starpod-core/src/config.rs): never taken for a typo of ours.
_AGENT_CHANNEL_KEYS = frozenset({"enabled", "stream_mode", "allowed_users", "bot_token"})

#: Spellings too far from ours for difflib that people still write for them.
_KEY_ALIASES = {
    "timezone": "tz",
    "time_zone": "tz",
    "zone": "tz",
    "reset_hour": "reset_at_hour",
    "daily_reset_hour": "reset_at_hour",
    "gap": "gap_minutes",
    "gap_min": "gap_minutes",
}


def _meant_key(key: str) -> str | None:
    """Our key that ``key`` probably misspells, or ``None`` when it is someone else's key."""
    if not isinstance(key, str) or key in _AGENT_CHANNEL_KEYS:
        return None
    normal = key.lower().replace("-", "_")
    if normal in _KEY_ALIASES:
        return _KEY_ALIASES[normal]
    matches = difflib.get_close_matches(normal, _CHANNEL_KEYS, n=1, cutoff=0.8)
    return matches[0] if matches else None


def _channel_config(source: str, section: str, values: object) -> ChannelConfig:
    if not isinstance(values, Mapping):
        raise ConfigError(source, section, None, "expected a table of settings")
    ours = {}
    for key, value in values.items():
        if key in _CHANNEL_KEYS:
            ours[key] = value
        elif (meant := _meant_key(key)) is not None:
            raise ConfigError(source, section, key, f"unknown key, did you mean {meant}?")
    try:
        return ChannelConfig(**ours)
    except InvalidInput as error:
        raise ConfigError(source, section, error.field, error.reason) from None


def load_config(config: AgentConfig | str | os.PathLike[str] | None) -> AgentConfig:
    """``config`` as an :class:`AgentConfig`: as it is, read from an ``agent.toml`` path, or empty."""
    if config is None:
        return AgentConfig()
    if isinstance(config, AgentConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        return AgentConfig.from_toml(Path(config))
    raise InvalidInput("config", f"expected an AgentConfig or a path to agent.toml, got {type(config).__name__}")
