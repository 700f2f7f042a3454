"""Timestamps: the Rust crate's RFC 3339 text on SQLite, microsecond-exact UTC everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine, text

from starpod_session import Channel, UsageRecord
from starpod_session._common.timestamps import format_rfc3339, parse_rfc3339


@pytest.mark.parametrize(
    ("moment", "stored"),
    [
        (datetime(2026, 3, 20, 12, 34, 56, tzinfo=timezone.utc), "2026-03-20T12:34:56+00:00"),
        (datetime(2026, 3, 20, 12, 34, 56, 123000, tzinfo=timezone.utc), "2026-03-20T12:34:56.123+00:00"),
        (datetime(2026, 3, 20, 12, 34, 56, 123456, tzinfo=timezone.utc), "2026-03-20T12:34:56.123456+00:00"),
        (datetime(2026, 3, 20, 12, 34, 56, 100, tzinfo=timezone.utc), "2026-03-20T12:34:56.000100+00:00"),
        # Any offset is rendered in UTC.
        (
            datetime(2026, 3, 20, 14, 34, 56, tzinfo=timezone(timedelta(hours=2))),
            "2026-03-20T12:34:56+00:00",
        ),
    ],
)
def test_instants_are_written_in_the_rust_crates_shape(moment, stored):
    assert format_rfc3339(moment) == stored
    assert parse_rfc3339(stored) == moment


@pytest.mark.parametrize(
    ("written", "instant"),
    [
        ("2026-03-20T12:34:56Z", datetime(2026, 3, 20, 12, 34, 56, tzinfo=timezone.utc)),
        ("2026-03-20T12:34:56.5+00:00", datetime(2026, 3, 20, 12, 34, 56, 500000, tzinfo=timezone.utc)),
        # Nanoseconds (the Rust crate can write them) are truncated to microseconds.
        (
            "2026-03-20T12:34:56.123456789+00:00",
            datetime(2026, 3, 20, 12, 34, 56, 123456, tzinfo=timezone.utc),
        ),
        ("2026-03-20T07:34:56-05:00", datetime(2026, 3, 20, 12, 34, 56, tzinfo=timezone.utc)),
    ],
)
def test_every_rfc3339_spelling_reads_as_the_same_utc_instant(written, instant):
    parsed = parse_rfc3339(written)
    assert parsed == instant
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "written",
    [
        "2026-03-20T12:34:56",
        "2026-03-20",
        "yesterday",
        "2026-03-20T12:34:56+0000",
        # The lengths of what this library writes, not in its shape (read past the fast path).
        "2026-03-20T12:34:56,123+00:00",
        "2026-03-20T12:34:5x.123+00:00",
        "2026-03-20T12:34:56.123456+00:0x",
        "2026-03-20T12:34:56.1234567890+00:00",
        "",
    ],
)
def test_text_without_a_full_rfc3339_offset_is_refused(written):
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp with offset"):
        parse_rfc3339(written)


def test_stored_text_sorts_in_time_order():
    base = datetime(2026, 3, 20, 12, 34, 56, tzinfo=timezone.utc)
    moments = [base + timedelta(microseconds=step) for step in (0, 1, 1000, 100_000, 999_999, 1_000_000)]
    assert sorted(format_rfc3339(m) for m in moments) == [format_rfc3339(m) for m in moments]


def test_sqlite_rows_hold_the_crates_text(tmp_path):
    from starpod_session import SessionManager

    path = tmp_path / "sessions.db"
    moment = datetime(2026, 3, 20, 12, 34, 56, 123000, tzinfo=timezone.utc)
    with SessionManager(path) as manager, freeze_time(moment):
        session_id = manager.create_session(Channel.MAIN, "k")
        manager.save_message(session_id, "user", "hi")
        manager.record_usage(session_id, UsageRecord(input_tokens=1), turn=1)
        manager.record_compaction(session_id, "auto", 10, "s", 1)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        stored = (
            connection.execute(
                text(
                    "SELECT created_at FROM session_metadata UNION ALL SELECT last_message_at FROM session_metadata"
                    " UNION ALL SELECT timestamp FROM session_messages UNION ALL SELECT timestamp FROM usage_stats"
                    " UNION ALL SELECT timestamp FROM compaction_log"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert stored == ["2026-03-20T12:34:56.123+00:00"] * 5


def test_instants_round_trip_to_the_microsecond_as_aware_utc(manager):
    moment = datetime(2026, 3, 20, 12, 34, 56, 654321, tzinfo=timezone.utc)
    with freeze_time(moment):
        session_id = manager.create_session(Channel.MAIN, "k")
        manager.save_message(session_id, "user", "hi")
    meta = manager.get_session(session_id)
    (message,) = manager.get_messages(session_id)
    for value in (meta.created_at, meta.last_message_at, message.timestamp):
        assert value == moment
        assert value.utcoffset() == timedelta(0)


def test_since_compares_to_the_microsecond_on_every_backend(manager):
    moment = datetime(2026, 3, 20, 12, 34, 56, 654321, tzinfo=timezone.utc)
    session_id = manager.create_session(Channel.MAIN, "k")
    with freeze_time(moment):
        manager.record_usage(session_id, UsageRecord(input_tokens=1, cost_usd=1.0), turn=1)
    assert manager.cost_overview(since=moment).total_turns == 1
    assert manager.cost_overview(since=moment + timedelta(microseconds=1)).total_turns == 0
    assert manager.cost_overview(since="2026-03-20T14:34:56.654321+02:00").total_turns == 1


@pytest.mark.parametrize(
    ("moment", "stored"),
    [
        (datetime(999, 1, 1, tzinfo=timezone.utc), "0999-01-01T00:00:00+00:00"),
        (datetime(1, 1, 1, 0, 0, 0, 5000, tzinfo=timezone.utc), "0001-01-01T00:00:00.005+00:00"),
        (datetime(999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))), "1000-01-01T01:00:00+00:00"),
        (datetime(1000, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))), "0999-12-31T23:00:00+00:00"),
    ],
)
def test_years_before_1000_are_written_with_four_digits_and_read_back(moment, stored):
    assert format_rfc3339(moment) == stored
    assert parse_rfc3339(stored) == moment
    assert format_rfc3339(moment) < format_rfc3339(datetime(1000, 1, 1, 2, tzinfo=timezone.utc))


def test_a_since_before_year_1000_gives_the_same_answer_on_every_backend(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    with freeze_time(datetime(2026, 3, 20, tzinfo=timezone.utc)):
        manager.record_usage(session_id, UsageRecord(input_tokens=1, cost_usd=1.0), turn=1)
    assert manager.cost_overview(since="0999-01-01T00:00:00Z").total_turns == 1
    assert manager.cost_overview(since=datetime(1, 1, 1, tzinfo=timezone.utc)).total_turns == 1
    assert manager.cost_overview(until="0999-01-01T00:00:00Z").total_turns == 0


def test_a_bare_date_is_utc_midnight_for_since_and_until(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    for moment in ("2026-02-28T23:59:59Z", "2026-03-01T00:00:00Z", "2026-03-31T23:59:59Z", "2026-04-01T00:00:00Z"):
        with freeze_time(moment):
            manager.record_usage(session_id, UsageRecord(input_tokens=1, cost_usd=1.0), turn=1)
    march = manager.cost_overview(since="2026-03-01", until="2026-04-01")
    assert march.total_turns == 2
    assert march == manager.cost_overview(since="2026-03-01T00:00:00Z", until="2026-04-01T00:00:00+00:00")
