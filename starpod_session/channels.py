"""Channels and their resolvers: the policy that decides when an open session continues.

A new kind of channel is one class with an ``is_stale`` method, registered under a
name in :class:`ChannelRegistry`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime, time, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

import attrs

from .errors import InvalidInput

__all__ = [
    "DEFAULT_GAP_MINUTES",
    "TELEGRAM_GAP_MINUTES",
    "Channel",
    "ChannelRegistry",
    "ChannelResolver",
    "DailyResetResolver",
    "ExplicitResolver",
    "TimeGapResolver",
    "slack_session_key",
]

#: The Telegram inactivity threshold of the original crate: 6 hours.
TELEGRAM_GAP_MINUTES = 360


class Channel(str, enum.Enum):
    """The built-in channels; their values are what the ``channel`` column stores."""

    #: Explicit sessions (web, REPL, CLI): continue for as long as they are open.
    MAIN = "main"
    #: Time-gap sessions: a new one starts after a period of inactivity (6 hours).
    TELEGRAM = "telegram"
    #: Time-gap sessions per sender address (24 hours).
    EMAIL = "email"
    #: Time-gap sessions per Slack thread (6 hours); key with :func:`slack_session_key`.
    SLACK = "slack"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_channel_str(cls, name: str) -> Channel:
        """The channel named ``name``, as the crate maps it: an unknown name is :attr:`MAIN`.

        Exact names only (``"Slack"`` is main too). Only the facade refuses
        unknown names; this lenient mapping is for code ported from the crate.
        """
        if not isinstance(name, str):
            raise InvalidInput("channel", f"expected a channel name as a str, got {type(name).__name__}")
        try:
            return cls(name)
        except ValueError:
            return cls.MAIN


#: The gap of each built-in time-gap channel when ``agent.toml`` sets none (the crate's defaults).
#: Any further time-gap channel defaults to :data:`TELEGRAM_GAP_MINUTES`.
DEFAULT_GAP_MINUTES: Mapping[str, int] = {
    Channel.TELEGRAM.value: TELEGRAM_GAP_MINUTES,
    Channel.EMAIL.value: 24 * 60,
    Channel.SLACK.value: TELEGRAM_GAP_MINUTES,
}


class ChannelResolver(Protocol):
    """Decides whether an open session of a channel has gone stale."""

    def is_stale(self, last_message_at: datetime, now: datetime, gap_minutes: int | None) -> bool:
        """True when the session last active at ``last_message_at`` must be closed at ``now``.

        ``gap_minutes`` is the caller's per-call override, or ``None``.
        """
        ...


@attrs.frozen
class ExplicitResolver:
    """Sessions that continue however old they are, until closed by hand (``main``)."""

    def is_stale(self, last_message_at: datetime, now: datetime, gap_minutes: int | None) -> bool:
        """Never stale."""
        return False


@attrs.frozen
class TimeGapResolver:
    """Sessions that end after ``gap_minutes`` of inactivity (``telegram``, ``email``, ``slack``).

    A session continues while ``now - last_message_at`` is strictly less than the
    gap; a ``last_message_at`` in the future always continues.
    """

    gap_minutes: int = TELEGRAM_GAP_MINUTES
    # The configured gap as a timedelta, made once (making one costs more than the test
    # itself); None for a gap no timedelta holds, which is_stale then refuses as it comes.
    _gap: timedelta | None = attrs.field(init=False, eq=False, repr=False)

    @_gap.default
    def _gap_default(self) -> timedelta | None:
        try:
            return timedelta(minutes=self.gap_minutes)
        except (TypeError, ValueError, OverflowError):
            return None

    def is_stale(self, last_message_at: datetime, now: datetime, gap_minutes: int | None) -> bool:
        """True once the inactivity reaches the gap (the override wins over the configured one)."""
        gap = self._gap if gap_minutes is None else None
        if gap is None:
            gap = timedelta(minutes=self.gap_minutes if gap_minutes is None else gap_minutes)
        return now - last_message_at >= gap


@attrs.frozen
class DailyResetResolver:
    """Another resolver's sessions, also ended every day at ``reset_at_hour`` local time in ``tz``.

    A session last active before the most recent reset boundary (the latest local
    ``reset_at_hour:00`` at or before now) is stale, whatever ``inner`` says. The
    boundary is computed with ``zoneinfo``: on the day clocks spring forward past
    the hour, it is the instant the clocks jump; on the day they fall back over it,
    it is the hour's first occurrence.
    """

    inner: ChannelResolver
    reset_at_hour: int
    tz: ZoneInfo

    def is_stale(self, last_message_at: datetime, now: datetime, gap_minutes: int | None) -> bool:
        """Stale for ``inner``, or last active before the most recent reset."""
        return last_message_at < self.last_reset(now) or self.inner.is_stale(last_message_at, now, gap_minutes)

    def last_reset(self, now: datetime) -> datetime:
        """The most recent reset boundary at or before ``now``, in UTC."""
        today = now.astimezone(self.tz).date()
        for day in (today, today - timedelta(days=1)):
            # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time.
            boundary = datetime.combine(day, time(self.reset_at_hour), self.tz).astimezone(timezone.utc)
            if boundary <= now:
                return boundary
        raise AssertionError("a reset hour lies within the last two local days")  # pragma: no cover


#: The longest gap taken: 100 years of minutes (a longer one never expires anyway,
#: and ``timedelta`` cannot hold much more).
MAX_GAP_MINUTES = 100 * 366 * 24 * 60


def check_gap_minutes(value: object, field: str = "gap_minutes") -> int:
    """A gap is a whole number of minutes in 0..:data:`MAX_GAP_MINUTES` (100 years)."""
    if type(value) is not int or value < 0:
        raise InvalidInput(field, f"expected a non-negative int of minutes, got {value!r}")
    if value > MAX_GAP_MINUTES:
        raise InvalidInput(field, f"{value} minutes is more than 100 years ({MAX_GAP_MINUTES} minutes)")
    return value


_SLACK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLACK_TS = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")


def slack_session_key(team_id: str, channel_id: str, *, ts: str, thread_ts: str | None = None) -> str:
    """The session key of a Slack message: ``{team_id}:{channel_id}:{thread_ts or ts}``.

    As in the crate, every reply in a thread (``thread_ts`` set) keys the thread's
    root, and a top-level message (no ``thread_ts``) starts a thread of its own,
    so each thread is one session. ``ts`` and ``thread_ts`` are the strings Slack
    sends (``"1700000000.000100"``): a float would lose digits and split a thread,
    so it is refused. IDs are 1-64 letters, digits, ``_`` or ``-``; anything else
    raises :class:`InvalidInput` naming the argument.
    """
    for field, value in (("team_id", team_id), ("channel_id", channel_id)):
        if not isinstance(value, str) or not _SLACK_ID.fullmatch(value):
            raise InvalidInput(field, f"expected a Slack ID of 1-64 letters, digits, '_' or '-', got {value!r}")
    for field, stamp in (("ts", ts), ("thread_ts", thread_ts)):
        if (stamp is not None or field == "ts") and not (isinstance(stamp, str) and _SLACK_TS.fullmatch(stamp)):
            raise InvalidInput(field, f"expected a Slack timestamp string such as '1700000000.000100', got {stamp!r}")
    return f"{team_id}:{channel_id}:{thread_ts or ts}"


class ChannelRegistry:
    """The channels a manager knows, by name, each with its resolver."""

    def __init__(self, resolvers: Mapping[str, ChannelResolver] | None = None) -> None:
        self._resolvers: dict[str, ChannelResolver] = {Channel.MAIN.value: ExplicitResolver()}
        self._resolvers.update({name: TimeGapResolver(gap) for name, gap in DEFAULT_GAP_MINUTES.items()})
        self._resolvers.update(resolvers or {})

    @property
    def names(self) -> tuple[str, ...]:
        """The registered channel names."""
        return tuple(self._resolvers)

    def channel_name(self, channel: object) -> str:
        """The stored name of ``channel`` (a :class:`Channel` or a registered name)."""
        # Every call that names a channel: the common cases without the enum's ``value`` property.
        if channel.__class__ is Channel:
            return channel._value_  # every Channel is registered (see __init__)
        if channel.__class__ is str and channel in self._resolvers:
            return channel
        name = channel.value if isinstance(channel, Channel) else channel
        if not isinstance(name, str) or name not in self._resolvers:
            known = ", ".join(sorted(self._resolvers))
            raise InvalidInput("channel", f"unknown channel {channel!r}; known channels: {known}")
        return name

    def resolver(self, channel_name: str) -> ChannelResolver:
        """The resolver of a name returned by :meth:`channel_name`."""
        return self._resolvers[channel_name]
