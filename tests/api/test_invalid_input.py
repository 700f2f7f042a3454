"""Bad input is refused with InvalidInput naming the field, unknown ids with SessionNotFound; nothing is written.

Hostile but valid values (SQL text, normalisation variants) are stored verbatim.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from starpod_session import Channel, Continue, InvalidInput, New, SessionNotFound, UsageRecord

from ..helpers import raw_engine, row_counts

T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
MIB = 1024 * 1024
TOO_LONG = "k" * 256
HUGE_KEY = "k" * MIB


def usage(**fields):
    return lambda m, sid: m.record_usage(sid, UsageRecord(**fields), 1)


# (case id, call(manager, existing session id), expected InvalidInput.field). Values are built
# inside the lambdas, so the large ones exist only while their case runs.
INVALID = [
    # channels
    ("channel-unknown", lambda m, sid: m.resolve_session("irc", "k"), "channel"),
    ("channel-upper-case", lambda m, sid: m.resolve_session("MAIN", "k"), "channel"),
    ("channel-capitalised", lambda m, sid: m.resolve_session("Telegram", "k"), "channel"),
    ("channel-capitalised-slack", lambda m, sid: m.resolve_session("Slack", "k"), "channel"),
    ("channel-email-trailing-space", lambda m, sid: m.resolve_session("email ", "k"), "channel"),
    ("resolve-channel-empty", lambda m, sid: m.resolve_session("", "k"), "channel"),
    ("resolve-channel-trailing-space", lambda m, sid: m.resolve_session("main ", "k"), "channel"),
    ("channel-none", lambda m, sid: m.resolve_session(None, "k"), "channel"),
    ("channel-int", lambda m, sid: m.create_session(1, "k"), "channel"),
    ("create-channel-unknown", lambda m, sid: m.create_session("Main", "k"), "channel"),
    ("open-channel-unknown", lambda m, sid: m.open_session("sms", "k"), "channel"),
    ("channel-empty", lambda m, sid: m.open_session("", "k"), "channel"),
    ("channel-trailing-space", lambda m, sid: m.create_session("main ", "k"), "channel"),
    ("channel-sql", lambda m, sid: m.resolve_session("main' OR '1'='1", "k"), "channel"),
    # keys and user ids
    ("key-none", lambda m, sid: m.resolve_session(Channel.MAIN, None), "key"),
    ("key-int", lambda m, sid: m.create_session(Channel.MAIN, 42), "key"),
    ("key-empty", lambda m, sid: m.create_session(Channel.MAIN, ""), "key"),
    ("key-256-chars", lambda m, sid: m.create_session(Channel.MAIN, TOO_LONG), "key"),
    ("key-1-mib", lambda m, sid: m.resolve_session(Channel.MAIN, HUGE_KEY), "key"),
    ("create-key-1-mib", lambda m, sid: m.create_session(Channel.MAIN, HUGE_KEY), "key"),
    ("open-key-1-mib", lambda m, sid: m.open_session(Channel.TELEGRAM, HUGE_KEY), "key"),
    ("open-key-none", lambda m, sid: m.open_session(Channel.MAIN, None), "key"),
    ("key-nul", lambda m, sid: m.create_session(Channel.MAIN, "a\x00b"), "key"),
    ("key-lone-surrogate", lambda m, sid: m.create_session(Channel.MAIN, "a\ud800"), "key"),
    ("key-bytes", lambda m, sid: m.open_session(Channel.MAIN, b"k"), "key"),
    ("user-id-empty", lambda m, sid: m.create_session(Channel.MAIN, "k", user_id=""), "user_id"),
    ("user-id-none", lambda m, sid: m.resolve_session(Channel.MAIN, "k", user_id=None), "user_id"),
    ("user-id-256-chars", lambda m, sid: m.open_session(Channel.MAIN, "k", user_id=TOO_LONG), "user_id"),
    ("user-id-nul", lambda m, sid: m.create_session(Channel.MAIN, "k", user_id="\x00"), "user_id"),
    ("user-id-1-mib", lambda m, sid: m.create_session(Channel.MAIN, "k", user_id=HUGE_KEY), "user_id"),
    ("user-id-surrogate", lambda m, sid: m.open_session(Channel.MAIN, "k", user_id="u\udc00"), "user_id"),
    ("user-id-int", lambda m, sid: m.create_session(Channel.MAIN, "k", user_id=1), "user_id"),
    ("triggered-by-surrogate", lambda m, sid: m.open_session(Channel.MAIN, "k", triggered_by="\ud800"), "triggered_by"),
    ("triggered-by-empty", lambda m, sid: m.create_session(Channel.MAIN, "k", triggered_by=""), "triggered_by"),
    ("triggered-by-256", lambda m, sid: m.open_session(Channel.MAIN, "k", triggered_by=TOO_LONG), "triggered_by"),
    ("triggered-by-int", lambda m, sid: m.create_session(Channel.MAIN, "k", triggered_by=7), "triggered_by"),
    # gaps
    ("gap-negative", lambda m, sid: m.resolve_session(Channel.TELEGRAM, "k", -1), "gap_minutes"),
    ("gap-float", lambda m, sid: m.resolve_session(Channel.TELEGRAM, "k", 5.0), "gap_minutes"),
    ("gap-bool", lambda m, sid: m.open_session(Channel.TELEGRAM, "k", True), "gap_minutes"),
    ("gap-str", lambda m, sid: m.resolve_session(Channel.TELEGRAM, "k", "5"), "gap_minutes"),
    # session ids
    ("session-id-none", lambda m, sid: m.touch_session(None), "session_id"),
    ("session-id-int", lambda m, sid: m.get_session(1), "session_id"),
    ("session-id-nul", lambda m, sid: m.get_messages(sid + "\x00"), "session_id"),
    ("session-id-1-mib", lambda m, sid: m.session_usage(HUGE_KEY), "session_id"),
    ("session-id-surrogate", lambda m, sid: m.mark_read("\udfff", True), "session_id"),
    # titles and summaries
    ("title-none", lambda m, sid: m.set_title_if_empty(sid, None), "title"),
    ("title-empty", lambda m, sid: m.set_title_if_empty(sid, ""), "title"),
    ("title-nul", lambda m, sid: m.set_title_if_empty(sid, "ti\x00tle"), "title"),
    ("title-surrogate", lambda m, sid: m.set_title_if_empty(sid, "\ud800"), "title"),
    ("summary-none", lambda m, sid: m.close_session(sid, None), "summary"),
    ("summary-nul", lambda m, sid: m.close_session(sid, "done\x00"), "summary"),
    ("summary-surrogate", lambda m, sid: m.close_session(sid, "\ud83d"), "summary"),
    # read flag
    ("is-read-int", lambda m, sid: m.mark_read(sid, 1), "is_read"),
    ("is-read-str", lambda m, sid: m.mark_read(sid, "yes"), "is_read"),
    ("is-read-none", lambda m, sid: m.mark_read(sid, None), "is_read"),
    # messages
    ("role-empty", lambda m, sid: m.save_message(sid, "", "hi"), "role"),
    ("role-none", lambda m, sid: m.save_message(sid, None, "hi"), "role"),
    ("role-256-chars", lambda m, sid: m.save_message(sid, TOO_LONG, "hi"), "role"),
    ("role-nul", lambda m, sid: m.save_message(sid, "us\x00er", "hi"), "role"),
    ("role-surrogate", lambda m, sid: m.save_message(sid, "\udfffuser", "hi"), "role"),
    ("role-1-mib", lambda m, sid: m.save_message(sid, HUGE_KEY, "hi"), "role"),
    ("content-none", lambda m, sid: m.save_message(sid, "user", None), "content"),
    ("content-bytes", lambda m, sid: m.save_message(sid, "user", b"hi"), "content"),
    ("content-nul", lambda m, sid: m.save_message(sid, "user", "hi\x00there"), "content"),
    ("content-surrogate", lambda m, sid: m.save_message(sid, "user", "hi \ud800"), "content"),
    ("content-16-mib-plus-1-byte", lambda m, sid: m.save_message(sid, "user", "a" * (16 * MIB + 1)), "content"),
    ("content-16-mib-plus-multibyte", lambda m, sid: m.save_message(sid, "user", "é" * (8 * MIB) + "é"), "content"),
    # usage
    ("usage-record-none", lambda m, sid: m.record_usage(sid, None, 1), "usage_record"),
    ("usage-record-dict", lambda m, sid: m.record_usage(sid, {"input_tokens": 1}, 1), "usage_record"),
    ("turn-negative", lambda m, sid: m.record_usage(sid, UsageRecord(), -1), "turn"),
    ("turn-bool", lambda m, sid: m.record_usage(sid, UsageRecord(), True), "turn"),
    ("turn-float", lambda m, sid: m.record_usage(sid, UsageRecord(), 1.0), "turn"),
    ("turn-2-pow-63", lambda m, sid: m.record_usage(sid, UsageRecord(), 2**63), "turn"),
    ("input-tokens-negative", usage(input_tokens=-1), "input_tokens"),
    ("input-tokens-2-pow-63", usage(input_tokens=2**63), "input_tokens"),
    ("output-tokens-bool", usage(output_tokens=True), "output_tokens"),
    ("output-tokens-float", usage(output_tokens=1.5), "output_tokens"),
    ("cache-read-none", usage(cache_read=None), "cache_read"),
    ("cache-write-str", usage(cache_write="10"), "cache_write"),
    ("cost-nan", usage(cost_usd=float("nan")), "cost_usd"),
    ("cost-inf", usage(cost_usd=float("inf")), "cost_usd"),
    ("cost-negative", usage(cost_usd=-0.01), "cost_usd"),
    ("cost-str", usage(cost_usd="0.1"), "cost_usd"),
    ("cost-bool", usage(cost_usd=True), "cost_usd"),
    ("model-empty", usage(model=""), "model"),
    ("model-256-chars", usage(model=TOO_LONG), "model"),
    ("model-nul", usage(model="opus\x00"), "model"),
    ("model-surrogate", usage(model="opus\ud800"), "model"),
    ("model-int", usage(model=4), "model"),
    ("usage-user-id-surrogate", usage(user_id="\udc00"), "user_id"),
    ("usage-user-id-256-chars", usage(user_id=TOO_LONG), "user_id"),
    ("usage-user-id-empty", usage(user_id=""), "user_id"),
    ("usage-user-id-int", usage(user_id=7), "user_id"),
    # compactions
    ("trigger-empty", lambda m, sid: m.record_compaction(sid, "", 1, "s", 1), "trigger"),
    ("trigger-none", lambda m, sid: m.record_compaction(sid, None, 1, "s", 1), "trigger"),
    ("trigger-256-chars", lambda m, sid: m.record_compaction(sid, TOO_LONG, 1, "s", 1), "trigger"),
    ("trigger-surrogate", lambda m, sid: m.record_compaction(sid, "\ud800", 1, "s", 1), "trigger"),
    ("compaction-summary-none", lambda m, sid: m.record_compaction(sid, "auto", 1, None, 1), "summary"),
    ("compaction-summary-surrogate", lambda m, sid: m.record_compaction(sid, "auto", 1, "\udfff", 1), "summary"),
    ("pre-tokens-negative", lambda m, sid: m.record_compaction(sid, "auto", -1, "s", 1), "pre_tokens"),
    ("pre-tokens-2-pow-63", lambda m, sid: m.record_compaction(sid, "auto", 2**63, "s", 1), "pre_tokens"),
    ("pre-tokens-bool", lambda m, sid: m.record_compaction(sid, "auto", False, "s", 1), "pre_tokens"),
    ("compaction-summary-nul", lambda m, sid: m.record_compaction(sid, "auto", 1, "\x00", 1), "summary"),
    ("messages-compacted-float", lambda m, sid: m.record_compaction(sid, "auto", 1, "s", 1.0), "messages_compacted"),
    ("messages-compacted-negative", lambda m, sid: m.record_compaction(sid, "auto", 1, "s", -3), "messages_compacted"),
    # reports
    ("since-naive-datetime", lambda m, sid: m.cost_overview(datetime(2026, 3, 1)), "since"),
    ("since-garbage", lambda m, sid: m.cost_overview("last tuesday"), "since"),
    ("since-no-offset", lambda m, sid: m.cost_overview("2026-03-01T00:00:00"), "since"),
    ("since-int", lambda m, sid: m.cost_overview(1_700_000_000), "since"),
    ("since-sql", lambda m, sid: m.cost_overview("2026-01-01' OR '1'='1"), "since"),
    ("since-1-mib", lambda m, sid: m.cost_overview("2" * MIB), "since"),
    ("since-surrogate", lambda m, sid: m.cost_overview("2026-03-01T00:00:00Z\ud800"), "since"),
    ("since-empty", lambda m, sid: m.cost_overview(since=""), "since"),
    ("since-month-13", lambda m, sid: m.cost_overview(since="2026-13-01T00:00:00Z"), "since"),
    ("until-words", lambda m, sid: m.cost_overview(until="tomorrow"), "until"),
    ("until-naive-datetime", lambda m, sid: m.cost_overview(until=datetime(2026, 3, 1)), "until"),
    (
        "until-before-since",
        lambda m, sid: m.cost_overview(since=T0, until=T0 - timedelta(microseconds=1)),
        "until",
    ),
    ("limit-negative", lambda m, sid: m.list_sessions(-1), "limit"),
    ("limit-float", lambda m, sid: m.list_sessions(2.0), "limit"),
    ("limit-bool", lambda m, sid: m.list_sessions(True), "limit"),
    ("limit-none", lambda m, sid: m.list_sessions(None), "limit"),
    ("list-user-id-empty", lambda m, sid: m.list_sessions(10, user_id=""), "user_id"),
    ("list-user-id-surrogate", lambda m, sid: m.list_sessions(10, user_id="\ud800"), "user_id"),
    ("list-channel-unknown", lambda m, sid: m.list_sessions(10, channel="irc"), "channel"),
    ("list-is-closed-int", lambda m, sid: m.list_sessions(10, is_closed=0), "is_closed"),
    ("list-user-id-int", lambda m, sid: m.list_sessions(10, user_id=7), "user_id"),
    ("list-is-read-str", lambda m, sid: m.list_sessions(10, is_read="yes"), "is_read"),
    ("list-archived-str", lambda m, sid: m.list_sessions(10, archived="all"), "archived"),
    ("archive-flag-str", lambda m, sid: m.archive_session(sid, "yes"), "archived"),
    ("archive-flag-int", lambda m, sid: m.archive_session(sid, 1), "archived"),
    ("archive-flag-none", lambda m, sid: m.archive_session(sid, None), "archived"),
    ("messages-limit-negative", lambda m, sid: m.get_messages(sid, limit=-1), "limit"),
    ("messages-before-id-negative", lambda m, sid: m.get_messages(sid, before_id=-1), "before_id"),
    ("messages-before-id-str", lambda m, sid: m.get_messages(sid, before_id="10"), "before_id"),
    ("messages-limit-float", lambda m, sid: m.get_messages(sid, limit=2.0), "limit"),
    ("messages-limit-bool", lambda m, sid: m.get_messages(sid, limit=True), "limit"),
    ("messages-before-id-2-pow-63", lambda m, sid: m.get_messages(sid, before_id=2**63), "before_id"),
    # beyond the backends' 64-bit integers and the datetime range
    ("limit-2-pow-63", lambda m, sid: m.list_sessions(2**63), "limit"),
    ("messages-limit-2-pow-64", lambda m, sid: m.get_messages(sid, limit=2**64), "limit"),
    ("messages-before-id-2-pow-64", lambda m, sid: m.get_messages(sid, before_id=2**64), "before_id"),
    ("prefix-limit-2-pow-64", lambda m, sid: m.session_ids_starting_with("a", 2**64), "limit"),
    ("since-before-year-1-in-utc", lambda m, sid: m.cost_overview(since="0001-01-01T00:00:00+01:00"), "since"),
    ("since-after-year-9999-in-utc", lambda m, sid: m.cost_overview(since="9999-12-31T23:30:00-01:00"), "since"),
    ("until-after-year-9999-in-utc", lambda m, sid: m.cost_overview(until="9999-12-31T23:30:00-01:00"), "until"),
    ("gap-10-pow-15-on-an-open-key", lambda m, sid: m.open_session("telegram", "k", gap_minutes=10**15), "gap_minutes"),
    ("resolve-gap-10-pow-15", lambda m, sid: m.resolve_session("telegram", "k", gap_minutes=10**15), "gap_minutes"),
    ("cost-int-beyond-double", usage(cost_usd=10**400), "cost_usd"),
]

# Writes naming a well-formed id that does not exist.
NOT_FOUND = [
    ("touch_session", lambda m: m.touch_session(UNKNOWN_ID)),
    ("set_title_if_empty", lambda m: m.set_title_if_empty(UNKNOWN_ID, "Title")),
    ("close_session", lambda m: m.close_session(UNKNOWN_ID, "summary")),
    ("mark_read", lambda m: m.mark_read(UNKNOWN_ID, False)),
    ("save_message", lambda m: m.save_message(UNKNOWN_ID, "user", "Hello")),
    ("record_usage", lambda m: m.record_usage(UNKNOWN_ID, UsageRecord(1, 1, 1, 1, 0.1, "m"), 1)),
    ("record_compaction", lambda m: m.record_compaction(UNKNOWN_ID, "auto", 1, "s", 1)),
]


@pytest.fixture
def counted(db_target):
    """A function returning the row count of every table of the test's database."""
    with raw_engine(db_target) as engine:
        yield lambda: row_counts(engine)


@pytest.fixture
def populated(manager):
    """A session with one row in every table, so a stray write or delete would show in the counts."""
    session_id = manager.create_session(Channel.TELEGRAM, "k")
    manager.save_message(session_id, "user", "hello")
    manager.record_usage(session_id, UsageRecord(1, 1, 0, 0, 0.5, "m"), 1)
    manager.record_compaction(session_id, "auto", 10, "s", 1)
    return session_id


@pytest.mark.parametrize(("call", "field"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_input_is_refused_naming_the_field_and_writes_nothing(manager, populated, counted, call, field):
    before = counted()
    meta_before = manager.get_session(populated)
    with pytest.raises(InvalidInput) as raised:
        call(manager, populated)
    assert raised.value.field == field
    assert counted() == before
    assert manager.get_session(populated) == meta_before


@pytest.mark.parametrize("call", [case[1] for case in NOT_FOUND], ids=[case[0] for case in NOT_FOUND])
def test_a_write_to_an_unknown_session_raises_session_not_found_and_writes_nothing(manager, populated, counted, call):
    before = counted()
    with pytest.raises(SessionNotFound) as raised:
        call(manager)
    assert raised.value.session_id == UNKNOWN_ID
    assert counted() == before


SQL_TEXT = "'; DROP TABLE session_metadata; --"


def test_sql_text_in_keys_and_content_is_stored_verbatim(manager, counted):
    session_id = manager.create_session(Channel.MAIN, SQL_TEXT, user_id=SQL_TEXT + '"')
    content = SQL_TEXT + " \\' \\\\ %s %(x)s ? $1"
    manager.save_message(session_id, "user", content)
    manager.save_message(session_id, SQL_TEXT, content)
    manager.record_usage(session_id, UsageRecord(model=SQL_TEXT, user_id=SQL_TEXT), 1)
    meta = manager.get_session(session_id)
    assert (meta.channel_session_key, meta.user_id, meta.title) == (SQL_TEXT, SQL_TEXT + '"', content)
    assert [(m.role, m.content) for m in manager.get_messages(session_id)] == [("user", content), (SQL_TEXT, content)]
    assert manager.cost_overview().by_model[0].model == SQL_TEXT
    assert manager.resolve_session(Channel.MAIN, SQL_TEXT, user_id=SQL_TEXT + '"') == Continue(session_id)
    assert counted()["session_metadata"] == 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("\u00e9", "e\u0301"),  # NFC vs NFD
        ("Key", "key"),
        ("ß", "ss"),
        ("k", "k "),  # trailing space
        ("ﬁ", "fi"),  # compatibility ligature
    ],
    ids=["nfc-vs-nfd", "case", "sharp-s", "trailing-space", "ligature"],
)
def test_keys_that_differ_only_in_normalisation_case_or_padding_are_distinct_sessions(manager, one, other):
    first = manager.create_session(Channel.MAIN, one)
    second = manager.create_session(Channel.MAIN, other)
    assert first != second
    assert manager.get_session(first).channel_session_key == one
    assert manager.get_session(second).channel_session_key == other
    assert manager.resolve_session(Channel.MAIN, one) == Continue(first)
    assert manager.resolve_session(Channel.MAIN, other) == Continue(second)


def test_a_key_of_255_four_byte_characters_is_accepted(manager):
    key = "🛒" * 255
    session_id = manager.create_session(Channel.MAIN, key, user_id="👤" * 255)
    assert manager.get_session(session_id).channel_session_key == key
    assert manager.resolve_session(Channel.MAIN, key, user_id="👤" * 255) == Continue(session_id)


#: Quotes, escapes, placeholders of every driver, line breaks, invisible and
#: direction-changing characters, a decomposed accent and astral code points.
HOSTILE = SQL_TEXT + ' \\\' \\\\ %s %(x)s ? $1 :name `x` "y" \r\n\t \u200b\u202e e\u0301 🛒 \U0010ffff '


def test_a_mebibyte_of_hostile_text_and_a_255_character_hostile_key_are_stored_verbatim(manager):
    key, user_id = (HOSTILE * 10)[:255], (HOSTILE * 10)[1:256]
    content = (HOSTILE * (MIB // len(HOSTILE) + 1))[:MIB]
    session_id = manager.create_session(Channel.MAIN, key, user_id=user_id)
    message_id = manager.save_message(session_id, "user", content)
    [message] = manager.get_messages(session_id)
    assert (message.id, message.content) == (message_id, content)
    manager.close_session(session_id, content)
    meta = manager.get_session(session_id)
    assert (meta.channel_session_key, meta.user_id, meta.summary) == (key, user_id, content)
    assert manager.resolve_session(Channel.MAIN, key, user_id=user_id) == New(closed_session_id=None)


def test_user_ids_and_models_differing_only_in_normalisation_or_padding_are_kept_apart(manager):
    variants = ["\u00e9", "e\u0301", "bob", "bob "]  # NFC and NFD; with and without a trailing space
    session_id = manager.create_session(Channel.MAIN, "k")
    for n, name in enumerate(variants):
        manager.record_usage(session_id, UsageRecord(cost_usd=n + 1.0, model=name, user_id=name), 1)
        assert manager.open_session(Channel.MAIN, "shared-key", user_id=name).created
    overview = manager.cost_overview()
    expected = sorted((name, n + 1.0) for n, name in enumerate(variants))
    assert sorted((u.user_id, u.total_cost_usd) for u in overview.by_user) == expected
    assert sorted((m.model, m.total_cost_usd) for m in overview.by_model) == expected
    for name in variants:
        assert [s.user_id for s in manager.list_sessions(10, user_id=name)] == [name]


@pytest.mark.parametrize("batch_size", [0, -1, 2**63, 1.5, True])
def test_a_prune_batch_size_outside_1_to_2_63_is_invalid_input(manager, batch_size):
    """Found by the fuzz test: 2**63 reached SQLite's LIMIT as an OverflowError."""
    with pytest.raises(InvalidInput) as raised:
        manager.prune(timedelta(0), batch_size=batch_size)
    assert raised.value.field == "batch_size"


@pytest.mark.parametrize("limit", [2**31, 2**63 - 1], ids=["2-pow-31", "2-pow-63-minus-1"])
def test_every_limit_the_checks_admit_works_on_every_backend(manager, session_id, limit):
    """``check_limit`` admits 0..2**63-1; PostgreSQL must not refuse the values past its 32-bit integer."""
    manager.save_message(session_id, "user", "deploy the release")
    [message] = manager.get_messages(session_id, limit)
    assert manager.get_messages(session_id, limit, before_id=limit) == [message]
    assert manager.get_messages(session_id, limit, before_id=message.id) == []
    assert [meta.id for meta in manager.list_sessions(limit)] == [session_id]
    assert [hit.message_id for hit in manager.search_messages("deploy", limit=limit)] == [message.id]
    assert manager.session_ids_starting_with(session_id[:4], limit) == [session_id]


def test_a_cursor_may_name_any_message_id_the_counts_admit_and_no_other(manager, session_id):
    from starpod_session.features.search import encode_cursor

    manager.save_message(session_id, "user", "deploy the release")
    hits = manager.search_messages("deploy")
    # Where the page starts depends on the scores; what matters is that no backend refuses the id.
    for message_id in (2**31, 2**40, 2**63 - 1):
        assert manager.search_messages("deploy", cursor=encode_cursor(1.0, message_id)) in ([], hits)
    for message_id in (-1, 2**63):
        with pytest.raises(InvalidInput, match="not a cursor from search_messages"):
            manager.search_messages("deploy", cursor=encode_cursor(1.0, message_id))
