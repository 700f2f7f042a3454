"""Every public method, driven with hostile values: only our own exceptions escape, and a failed call writes nothing.

Hypothesis picks a public method of :class:`SessionManager` (found by
introspection, so a new method is fuzzed without anyone remembering to add it)
and fills each parameter either with a value that method accepts or with a
hostile one: wrong types, huge and negative integers, NaN and infinities, NUL
characters, lone surrogates, texts over every limit, naive and extreme
datetimes, SQL and full-text operators. Whatever it picks:

* the call returns, or raises a :class:`StarpodSessionError` subclass — never a
  driver, SQLAlchemy, ``OverflowError``, ``AttributeError`` or ``OSError``;
* a call that raised left every table and the sessions folder exactly as they were.

The examples are derandomised (the same ones on every run, here and in CI) and
bounded, so a failure replays; ``STARPOD_SESSION_FUZZ_EXAMPLES`` raises the count
for a longer local hunt.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, select
from sqlalchemy.exc import SAWarning

from starpod_session import Channel, SessionManager, StarpodSessionError, UsageRecord
from starpod_session.backends.engine import create_storage_engine, to_url

EXAMPLES = int(os.environ.get("STARPOD_SESSION_FUZZ_EXAMPLES", "200"))

#: Methods that end the manager or are not calls on the data.
NOT_FUZZED = {"close"}

_huge_text = st.sampled_from(["x" * 256, "é" * 300, "k" * 70_000])
_operator_text = st.sampled_from(
    ['"', "*", "'; DROP TABLE session_metadata; --", "a OR b", "NEAR(a b)", "-", "+", "()", "^", ":", "@@", "%", "_"]
)
#: Values no parameter of ours takes, or takes only within limits.
HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([2**63, 2**64, -1, 10**15, 10**400, -(2**63) - 1, float("nan"), float("inf"), 1e308]),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00", "0999-01-01T00:00:00Z"]),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "main\x00"]),
    _huge_text,
    _operator_text,
    st.binary(max_size=8),
    st.datetimes(),  # naive
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()),
    st.sampled_from(["2026-02-30", "2026-03-01T10:00:00", "nosuch://x", "postgres://u:S3cret@h/db"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
)

_moments = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
    st.sampled_from(["2026-03-01T00:00:00Z", "2026-03-01", "2026-03-01T09:00:00+01:00"]),
)


def _valid_usage_records() -> st.SearchStrategy[UsageRecord]:
    counts = st.integers(min_value=0, max_value=10**9)
    return st.builds(
        UsageRecord,
        input_tokens=counts,
        output_tokens=counts,
        cache_read=counts,
        cache_write=counts,
        cost_usd=st.floats(min_value=0, max_value=1e6, allow_nan=False),
        model=st.one_of(st.none(), st.sampled_from(["opus", "sonnet"])),
    )


def _valid(name: str, session_id: str) -> st.SearchStrategy[Any]:
    """A value the parameter called ``name`` accepts (by the names the facade uses)."""
    by_name: dict[str, st.SearchStrategy[Any]] = {
        "session_id": st.just(session_id),
        "channel": st.sampled_from([Channel.MAIN, Channel.TELEGRAM, "main", "telegram"]),
        "key": st.sampled_from(["k", "key-2", "Ключ"]),
        "user_id": st.sampled_from(["admin", "alice", "Zoë"]),
        "role": st.sampled_from(["user", "assistant", "tool_use", "tool_result"]),
        "content": st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
        "title": st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
        "summary": st.text(max_size=40).filter(lambda t: "\x00" not in t),
        "trigger": st.sampled_from(["auto", "manual"]),
        "triggered_by": st.sampled_from(["cron:daily", "heartbeat"]),
        "usage_record": _valid_usage_records(),
        "limit": st.integers(min_value=0, max_value=50),
        "turn": st.integers(min_value=0, max_value=100),
        "pre_tokens": st.integers(min_value=0, max_value=10**6),
        "messages_compacted": st.integers(min_value=0, max_value=100),
        "gap_minutes": st.integers(min_value=0, max_value=10_000),
        "before_id": st.integers(min_value=0, max_value=10**6),
        "is_read": st.booleans(),
        "is_closed": st.booleans(),
        "since": _moments,
        "until": _moments,
        "prefix": st.sampled_from(["0", "a", "ff"]),
        "query": st.sampled_from(["hello", "deploy*", '"hello world"', "héllo мир"]),
        "roles": st.lists(st.sampled_from(["user", "assistant"]), min_size=1, max_size=2),
        "archived": st.one_of(st.none(), st.booleans()),
        "keep_usage": st.booleans(),
        "dry_run": st.booleans(),
        "older_than": st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)),
        "message_key": st.sampled_from(["msg-1", "msg-2"]),
        "usage_key": st.sampled_from(["turn-1", "turn-2"]),
    }
    return by_name.get(name, st.none())


def public_methods() -> list[str]:
    """Every public method of the facade, found by introspection."""
    return sorted(
        name
        for name, member in inspect.getmembers(SessionManager, inspect.isfunction)
        if not name.startswith("_") and name not in NOT_FUZZED
    )


@st.composite
def calls(draw: st.DrawFn, session_id: str) -> tuple[str, list[Any], dict[str, Any]]:
    """A method and its arguments: every argument valid but (usually) one, which is hostile.

    One hostile value at a time reaches the checks behind the first one, where
    values that are each fine alone (a huge limit, an extreme instant) hide.
    """
    name = draw(st.sampled_from(public_methods()))
    parameters = [
        p
        for p in list(inspect.signature(getattr(SessionManager, name)).parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    hostile = draw(st.integers(min_value=-1, max_value=len(parameters) - 1))  # -1: none
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for index, parameter in enumerate(parameters):
        if index == hostile:
            value = draw(HOSTILE)
        elif parameter.default is not parameter.empty and draw(st.booleans()):
            continue  # left at its default
        else:
            value = draw(_valid(parameter.name, session_id))
        if parameter.kind is parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = value
        else:
            args.append(value)
    return name, args, kwargs


class Snapshot:
    """Every row of every table, and every file of the sessions folder with its content."""

    def __init__(self, target: str, sessions_dir: Path) -> None:
        self.engine = create_storage_engine(to_url(target))
        self.sessions_dir = sessions_dir
        self.metadata = MetaData()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # expression indexes are not reflected; rows are
            self.metadata.reflect(self.engine)

    def take(self) -> tuple[object, ...]:
        with self.engine.connect() as connection:
            tables = tuple(
                (table.name, sorted(map(repr, connection.execute(select(table)).all())))
                for table in self.metadata.sorted_tables
            )
        files = tuple(sorted((p.name, p.read_bytes()) for p in self.sessions_dir.glob("**/*") if p.is_file()))
        return tables, files


@pytest.fixture
def fuzzed(make_manager, db_target, tmp_path):
    manager = make_manager()
    snapshot = Snapshot(db_target, tmp_path / "sessions")
    yield manager, snapshot
    snapshot.engine.dispose()


def test_hostile_arguments_raise_only_our_errors_and_write_nothing(fuzzed):
    manager, snapshot = fuzzed

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        session_id = manager.open_session(Channel.MAIN, "fuzz").session_id
        name, args, kwargs = data.draw(calls(session_id), label="call")
        before = snapshot.take()
        try:
            getattr(manager, name)(*args, **kwargs)
        except StarpodSessionError:
            after = snapshot.take()
            assert after == before, f"{name}(*{args!r}, **{kwargs!r}) failed but changed the database or files"
        # Any other exception fails the test with its own traceback.

    run()


@settings(max_examples=EXAMPLES * 3, derandomize=True, deadline=None, database=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": HOSTILE,
            "output_tokens": HOSTILE,
            "cache_read": HOSTILE,
            "cache_write": HOSTILE,
            "cost_usd": HOSTILE,
            "model": HOSTILE,
            "user_id": HOSTILE,
        },
    )
)
def test_a_usage_record_rejects_hostile_values_with_our_error(values):
    try:
        record = UsageRecord(**values)
    except StarpodSessionError:
        return
    assert all(0 <= getattr(record, field) <= 2**63 - 1 for field in ("input_tokens", "output_tokens"))
    assert math.isfinite(record.cost_usd) and record.cost_usd >= 0


def test_every_public_method_is_fuzzed():
    """The introspection finds the methods a user calls (so a renamed one cannot drop out silently)."""
    found = set(public_methods())
    assert {"open_session", "save_message", "record_usage", "cost_overview", "list_sessions"} <= found
    assert all(callable(getattr(SessionManager, name)) for name in found)


def test_a_closed_manager_raises_our_error_for_every_method(make_manager):
    manager = make_manager()
    manager.close()
    manager.close()  # twice is fine
    for name in public_methods():
        method = getattr(manager, name)
        arguments = [
            "x"
            for p in list(inspect.signature(method).parameters.values())
            if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        with pytest.raises(StarpodSessionError):
            method(*arguments)
