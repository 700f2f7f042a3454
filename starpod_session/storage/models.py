"""The tables, with the Rust crate's table, column and index names.

A SQLite file written by the Rust crate opens as it is; Alembic migrations are
generated from (and checked against) this metadata.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from sqlalchemy import Computed, ForeignKey, Index, Integer, MetaData, PrimaryKeyConstraint, Table, false, text, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..backends.column_types import (
    Count,
    EpochSeconds,
    ExactChannelText,
    ExactShortText,
    IntBoolean,
    LongText,
    Money,
    SearchableText,
    ShortText,
    UtcDay,
    UtcTimestamp,
)

__all__ = [
    "NAMING_CONVENTION",
    "AdkAppStateRow",
    "AdkEventRow",
    "AdkSessionRow",
    "AdkUserStateRow",
    "Base",
    "CompactionRow",
    "MessageRow",
    "SessionRow",
    "ToolCallRow",
    "UsageDailyRow",
    "UsageRow",
]

#: Stable constraint names on every backend, so migrations can name what they drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: utf8mb4 for 4-byte characters, binary collation so keys compare exactly as
#: they do on SQLite and PostgreSQL (case and normalisation variants stay distinct);
#: the columns compared by value also ignore no trailing spaces (``Exact*`` types).
_MARIADB_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

#: The expression behind ``session_metadata.open_slot``.
OPEN_SLOT_SQL = "CASE WHEN is_closed THEN NULL ELSE 1 END"


class Base(DeclarativeBase):
    """Declarative base carrying the shared :data:`NAMING_CONVENTION`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    #: Every model here maps one Table (SQLAlchemy types it as any FromClause, which
    #: ``insert``/``update`` and the repositories' column lists would not accept).
    __table__: ClassVar[Table]


class SessionRow(Base):
    """``session_metadata``: one row per conversation session."""

    __tablename__ = "session_metadata"

    id: Mapped[str] = mapped_column(ShortText, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    last_message_at: Mapped[datetime] = mapped_column(UtcTimestamp)
    is_closed: Mapped[bool] = mapped_column(IntBoolean, server_default=false())
    summary: Mapped[str | None] = mapped_column(LongText)
    message_count: Mapped[int] = mapped_column(Count, server_default=text("0"))
    channel: Mapped[str] = mapped_column(ExactChannelText, server_default=text("'main'"))
    channel_session_key: Mapped[str | None] = mapped_column(ExactShortText)
    title: Mapped[str | None] = mapped_column(ShortText)
    user_id: Mapped[str] = mapped_column(ExactShortText, server_default=text("'admin'"))
    is_read: Mapped[bool] = mapped_column(IntBoolean, server_default=true())
    triggered_by: Mapped[str | None] = mapped_column(ShortText)
    #: Hidden from the default listing; the Rust crate's column (core.db files carry it).
    #: No index leads with it: see ``SessionRepository.list_recent``.
    is_archived: Mapped[bool] = mapped_column(IntBoolean, server_default=false())
    #: 1 while the session is open, NULL once closed; derived by the database itself.
    #: The unique index below admits any number of NULLs, so it allows one open
    #: session per (channel, key, user_id) and any number of closed ones. (MariaDB
    #: has no partial indexes, hence a generated column on every backend alike.)
    open_slot: Mapped[int | None] = mapped_column(Integer, Computed(OPEN_SLOT_SQL))

    __table_args__ = (
        Index(
            "uq_session_one_open_per_key",
            "channel",
            "channel_session_key",
            "user_id",
            "open_slot",
            unique=True,
        ),
        Index("idx_session_recent", "last_message_at", "created_at", "id"),
        # (The Rust crate's idx_session_channel_key went in 0011: no query used it, and
        # every saved message rewrote its entry.)
        Index("idx_session_user_channel", "user_id", "channel", "channel_session_key"),
        # list_sessions(user_id=...) and list_sessions(channel=...), in recency order.
        Index("idx_session_user_recent", "user_id", "last_message_at", "created_at", "id"),
        Index("idx_session_channel_recent", "channel", "last_message_at", "created_at", "id"),
        _MARIADB_TABLE_OPTIONS,
    )


class MessageRow(Base):
    """``session_messages``: the transcript, in insertion (id) order."""

    __tablename__ = "session_messages"

    id: Mapped[int] = mapped_column(Count, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ShortText, ForeignKey("session_metadata.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(ShortText)
    content: Mapped[str] = mapped_column(SearchableText)
    timestamp: Mapped[datetime] = mapped_column(UtcTimestamp)
    #: The write's idempotency key (the caller's, or one the library generated):
    #: a repeat of the write with it stores nothing. NULL in rows written before 0006.
    message_key: Mapped[str | None] = mapped_column(ExactShortText)

    __table_args__ = (
        Index("idx_session_messages_session", "session_id", "id"),
        # Any number of NULL keys (rows written before 0006) on every backend.
        Index("uq_session_messages_session_id_message_key", "session_id", "message_key", unique=True),
        {"sqlite_autoincrement": True, **_MARIADB_TABLE_OPTIONS},
    )


class ToolCallRow(Base):
    """``tool_calls``: what the tool statistics need from ``tool_use`` / ``tool_result`` messages.

    Written by ``save_message`` in the message's transaction (and backfilled by
    migration 0007), so the report groups this small table instead of parsing
    message JSON. One row per ``tool_use`` message, and one per ``tool_result``
    message reporting an error (``is_error`` true); successful results need none.
    A use's ``is_error`` is true once an error result with its ``call_id`` exists
    in the same session, whichever of the two was saved first.
    """

    __tablename__ = "tool_calls"

    message_id: Mapped[int] = mapped_column(
        Count, ForeignKey("session_messages.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    session_id: Mapped[str] = mapped_column(ShortText)
    #: The message's role: ``tool_use`` or ``tool_result``.
    role: Mapped[str] = mapped_column(ExactChannelText)
    #: The use's ``id`` / the result's ``tool_use_id``; NULL when absent or not a string.
    call_id: Mapped[str | None] = mapped_column(ExactShortText)
    #: The tool's name (``"unknown"`` when the use names none); NULL on result rows.
    tool_name: Mapped[str | None] = mapped_column(ExactShortText)
    timestamp: Mapped[datetime] = mapped_column(UtcTimestamp)
    is_error: Mapped[bool] = mapped_column(IntBoolean, server_default=false())

    __table_args__ = (
        # Matching a result to its use (and a use to an earlier error result).
        Index("idx_tool_calls_call", "session_id", "call_id"),
        # The report: a range of one role's rows by time, covering what it groups and counts.
        Index("idx_tool_calls_report", "role", "timestamp", "tool_name", "is_error"),
        _MARIADB_TABLE_OPTIONS,
    )


class UsageRow(Base):
    """``usage_stats``: tokens and cost of one turn. No foreign key: usage outlives sessions."""

    __tablename__ = "usage_stats"

    id: Mapped[int] = mapped_column(Count, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ShortText)
    turn: Mapped[int] = mapped_column(Count)
    input_tokens: Mapped[int] = mapped_column(Count, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(Count, server_default=text("0"))
    cache_read: Mapped[int] = mapped_column(Count, server_default=text("0"))
    cache_write: Mapped[int] = mapped_column(Count, server_default=text("0"))
    cost_usd: Mapped[float] = mapped_column(Money, server_default=text("0.0"))
    model: Mapped[str | None] = mapped_column(ExactShortText)
    timestamp: Mapped[datetime] = mapped_column(UtcTimestamp)
    user_id: Mapped[str] = mapped_column(ExactShortText, server_default=text("'admin'"))
    #: The write's idempotency key, as ``session_messages.message_key``.
    usage_key: Mapped[str | None] = mapped_column(ExactShortText)

    __table_args__ = (
        Index("uq_usage_stats_session_id_usage_key", "session_id", "usage_key", unique=True),
        Index("idx_usage_stats_user", "user_id", "timestamp"),
        Index("idx_usage_stats_timestamp", "timestamp"),
        Index("idx_usage_stats_session", "session_id"),
        {"sqlite_autoincrement": True, **_MARIADB_TABLE_OPTIONS},
    )


#: How ``usage_daily`` names a usage row recorded without a model (the reports call it that too).
UNKNOWN_MODEL = "unknown"


class UsageDailyRow(Base):
    """``usage_daily``: the usage rows of each (UTC day, model, user), counted and summed.

    Kept by triggers on ``usage_stats`` (migration 0009; insert, update, delete), so
    every writer keeps it right, the Rust crate and ``forget_user``'s pseudonyms
    included; ``cost_overview`` reads it for whole days and scans only the rows of
    the partial days at the edges of its range. Rows recorded without a model count
    under :data:`UNKNOWN_MODEL` (as every report names them). Each token sum is kept
    as the sums of the values' high and low 32 bits, which no number of rows up to
    2**31 can overflow on any backend (a token count may be up to 2**63-1), and a
    group whose last row goes is deleted.
    """

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(UtcDay)
    model: Mapped[str] = mapped_column(ExactShortText)
    user_id: Mapped[str] = mapped_column(ExactShortText)
    turns: Mapped[int] = mapped_column(Count)
    cost_usd: Mapped[float] = mapped_column(Money)
    input_tokens_high: Mapped[int] = mapped_column(Count)
    input_tokens_low: Mapped[int] = mapped_column(Count)
    output_tokens_high: Mapped[int] = mapped_column(Count)
    output_tokens_low: Mapped[int] = mapped_column(Count)
    cache_read_high: Mapped[int] = mapped_column(Count)
    cache_read_low: Mapped[int] = mapped_column(Count)
    cache_write_high: Mapped[int] = mapped_column(Count)
    cache_write_low: Mapped[int] = mapped_column(Count)

    __table_args__ = (PrimaryKeyConstraint("day", "model", "user_id"), _MARIADB_TABLE_OPTIONS)


class CompactionRow(Base):
    """``compaction_log``: one row per context compaction of a session."""

    __tablename__ = "compaction_log"

    id: Mapped[int] = mapped_column(Count, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ShortText, ForeignKey("session_metadata.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = mapped_column(UtcTimestamp)
    trigger: Mapped[str] = mapped_column(ShortText, server_default=text("'auto'"))
    pre_tokens: Mapped[int] = mapped_column(Count)
    summary: Mapped[str] = mapped_column(LongText)
    messages_compacted: Mapped[int] = mapped_column(Count, server_default=text("0"))

    __table_args__ = (
        Index("idx_compaction_log_session", "session_id"),
        {"sqlite_autoincrement": True, **_MARIADB_TABLE_OPTIONS},
    )


# -- Google ADK (starpod_session.adk_store; migration 0012) ------------------------------
# An ADK session is keyed by (app, user, id) and is also a starpod session
# (``session_id``), whose messages, usage rows and search entries the ADK events
# feed; deleting that starpod session deletes the ADK session and its events
# (``ON DELETE CASCADE``). States are JSON objects, as ADK stores them.


class AdkAppStateRow(Base):
    """``adk_app_states``: the ``app:`` state of one ADK app (a JSON object, keys without the prefix)."""

    __tablename__ = "adk_app_states"

    app_name: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    state: Mapped[str] = mapped_column(LongText)
    update_time: Mapped[float] = mapped_column(EpochSeconds)

    __table_args__ = (_MARIADB_TABLE_OPTIONS,)


class AdkUserStateRow(Base):
    """``adk_user_states``: the ``user:`` state of one user of an ADK app (a JSON object)."""

    __tablename__ = "adk_user_states"

    app_name: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    user_id: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    state: Mapped[str] = mapped_column(LongText)
    update_time: Mapped[float] = mapped_column(EpochSeconds)

    __table_args__ = (_MARIADB_TABLE_OPTIONS,)


class AdkSessionRow(Base):
    """``adk_sessions``: one ADK session, keyed as ADK keys it, linked to its starpod session."""

    __tablename__ = "adk_sessions"

    app_name: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    user_id: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    id: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    #: The starpod session holding the conversation's messages and usage.
    session_id: Mapped[str] = mapped_column(ShortText, ForeignKey("session_metadata.id", ondelete="CASCADE"))
    #: The session-scoped state (a JSON object).
    state: Mapped[str] = mapped_column(LongText)
    create_time: Mapped[float] = mapped_column(EpochSeconds)
    #: ADK's ``last_update_time``: the creation time, then each appended event's timestamp.
    update_time: Mapped[float] = mapped_column(EpochSeconds)
    #: Bumped by every stored event: what tells a stale session object (optimistic concurrency).
    revision: Mapped[int] = mapped_column(Count)

    __table_args__ = (
        Index("uq_adk_sessions_session_id", "session_id", unique=True),
        # list_sessions, for one user or all users of an app, in ADK's order.
        Index("idx_adk_sessions_app_recent", "app_name", "update_time", "user_id", "id"),
        Index("idx_adk_sessions_user_recent", "app_name", "user_id", "update_time", "id"),
        _MARIADB_TABLE_OPTIONS,
    )


class AdkEventRow(Base):
    """``adk_events``: one stored ADK event, as ADK's own JSON, under its id (unique per session)."""

    __tablename__ = "adk_events"

    session_id: Mapped[str] = mapped_column(
        ShortText, ForeignKey("session_metadata.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(ExactShortText, primary_key=True)
    timestamp: Mapped[float] = mapped_column(EpochSeconds)
    event_data: Mapped[str] = mapped_column(LongText)

    __table_args__ = (
        # get_session: the events in (timestamp, id) order, the newest N read backwards.
        Index("idx_adk_events_session_time", "session_id", "timestamp", "id"),
        _MARIADB_TABLE_OPTIONS,
    )
