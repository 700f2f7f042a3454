"""The per-day usage rollup (``usage_daily``): kept right by triggers, read by ``cost_overview``.

The rollup must equal an aggregation of ``usage_stats`` from scratch after any
mix of writes (ours, or any program's: the triggers are in the database), and
``cost_overview`` over any ``since``/``until`` must equal a scan of the rows.
Costs here are multiples of 1/64 below 2**20, so every float sum is exact
whatever the order the database adds them in, and the comparisons can be exact.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starpod_session import (
    Channel,
    CostOverview,
    DailyModelCost,
    ModelCostSummary,
    SessionManager,
    SessionNotFound,
    UsageRecord,
    UserCostSummary,
)
from starpod_session.storage.models import UsageDailyRow, UsageRow
from starpod_session.storage.schema import upgrade_schema

from ..helpers import RUST_FILES, downgrade_schema, raw_connection, raw_engine

UTC = timezone.utc
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 4
USERS = ("alice", "bob", "carol")
MODELS = ("opus", "haiku", "unknown", None)
#: A token count near the top of the range: sums of two overflow 64 bits.
HUGE = 2**62 + 12345
_usage = UsageRow.__table__
_daily = UsageDailyRow.__table__

#: The triggers migration 0009 creates on each backend.
TRIGGERS = {"usage_daily_insert", "usage_daily_update", "usage_daily_delete"}

Totals = tuple[int, float, int, int, int, int]  # turns, cost, input, output, cache read, cache write


def moments() -> st.SearchStrategy[datetime]:
    """Instants over ``DAYS`` days, often exactly at midnight or a microsecond either side of it."""
    midnight = st.integers(0, DAYS).map(lambda d: T0 + timedelta(days=d))
    near = st.tuples(midnight, st.sampled_from([-1, 0, 1])).map(lambda p: p[0] + timedelta(microseconds=p[1]))
    anywhere = st.integers(0, DAYS * 86_400_000_000 - 1).map(lambda us: T0 + timedelta(microseconds=us))
    return st.one_of(near, anywhere)


def usage_rows() -> st.SearchStrategy[dict[str, Any]]:
    tokens = st.one_of(st.integers(0, 10_000), st.just(HUGE))
    return st.fixed_dictionaries(
        {
            "session": st.integers(0, 3),
            "input_tokens": tokens,
            "output_tokens": st.integers(0, 1000),
            "cache_read": tokens,
            "cache_write": st.integers(0, 1000),
            "cost_usd": st.integers(0, 2**14).map(lambda n: n / 64),
            "model": st.sampled_from(MODELS),
            "user_id": st.sampled_from(USERS),
            "timestamp": moments(),
        }
    )


def insert_rows(target: str, sessions: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """Insert usage rows as any program would, past the library (the triggers still run)."""
    values = [
        {**{k: v for k, v in row.items() if k != "session"}, "session_id": sessions[row["session"]], "turn": n}
        for n, row in enumerate(rows)
    ]
    if values:
        with raw_connection(target, begin=True) as connection:
            connection.execute(sa.insert(_usage), values)


def scratch(target: str) -> dict[tuple[date, str, str], Totals]:
    """(UTC day, model or "unknown", user) → totals, aggregated in Python from every usage row."""
    groups: dict[tuple[date, str, str], list[Any]] = defaultdict(lambda: [0, 0.0, 0, 0, 0, 0])
    with raw_connection(target) as connection:
        for row in connection.execute(sa.select(_usage)).mappings():
            group = groups[(row["timestamp"].astimezone(UTC).date(), row["model"] or "unknown", row["user_id"])]
            group[0] += 1
            group[1] += row["cost_usd"]
            for n, column in enumerate(("input_tokens", "output_tokens", "cache_read", "cache_write"), start=2):
                group[n] += row[column]
    return {key: tuple(value) for key, value in groups.items()}  # type: ignore[misc]


def rollup(target: str) -> dict[tuple[date, str, str], Totals]:
    """What ``usage_daily`` holds, token halves joined."""
    found = {}
    with raw_connection(target) as connection:
        for row in connection.execute(sa.select(_daily)).mappings():
            tokens = [
                (row[f"{name}_high"] << 32) + row[f"{name}_low"]
                for name in ("input_tokens", "output_tokens", "cache_read", "cache_write")
            ]
            found[(row["day"], row["model"], row["user_id"])] = (row["turns"], row["cost_usd"], *tokens)
    return found


def expected_overview(target: str, since: datetime | None, until: datetime | None) -> CostOverview:
    """The overview computed in Python from a scan of the rows."""
    rows = []
    with raw_connection(target) as connection:
        rows.extend(
            row
            for row in connection.execute(sa.select(_usage)).mappings()
            if (since is None or row["timestamp"] >= since) and (until is None or row["timestamp"] < until)
        )

    def sums(selected: list[Any]) -> tuple[float, int, int, int, int, int]:
        return (
            sum((r["cost_usd"] for r in selected), 0.0),
            sum(r["input_tokens"] for r in selected),
            sum(r["output_tokens"] for r in selected),
            len(selected),
            sum(r["cache_read"] for r in selected),
            sum(r["cache_write"] for r in selected),
        )

    def grouped(key: Any) -> dict[Any, list[Any]]:
        out: dict[Any, list[Any]] = defaultdict(list)
        for r in rows:
            out[key(r)].append(r)
        return out

    by_user = sorted(
        (UserCostSummary(user, *sums(rs)) for user, rs in grouped(lambda r: r["user_id"]).items()),
        key=lambda s: (-s.total_cost_usd, s.user_id),
    )
    by_model = sorted(
        (ModelCostSummary(model, *sums(rs)) for model, rs in grouped(lambda r: r["model"] or "unknown").items()),
        key=lambda s: (-s.total_cost_usd, s.model),
    )
    by_day = sorted(
        (
            DailyModelCost(model, *sums(rs), day=day)
            for (day, model), rs in grouped(
                lambda r: (r["timestamp"].astimezone(UTC).date(), r["model"] or "unknown")
            ).items()
        ),
        key=lambda s: (s.day, -s.total_cost_usd, s.model),
    )
    cost, input_tokens, output_tokens, turns, cache_read, cache_write = sums(rows)
    return CostOverview(
        cost,
        input_tokens,
        output_tokens,
        turns,
        tuple(by_user),
        tuple(by_model),
        cache_read,
        cache_write,
        tuple(by_day),
    )


def sessions_of(manager: SessionManager) -> list[str]:
    """Four sessions: one per user, and a second of alice's."""
    return [manager.create_session(Channel.MAIN, f"k{n}", user_id=user) for n, user in enumerate((*USERS, "alice"))]


def emptied(target: str) -> None:
    with raw_connection(target, begin=True) as connection:
        connection.execute(sa.delete(_usage))
        connection.execute(sa.delete(_daily))


# -- the triggers exist ----------------------------------------------------------------------


def triggers_on_usage(target: str, backend: str) -> set[str]:
    with raw_connection(target) as connection:
        if backend == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'usage_stats'"
        elif backend == "postgresql":
            query = (
                "SELECT DISTINCT trigger_name FROM information_schema.triggers WHERE event_object_table = 'usage_stats'"
            )
        else:
            query = (
                "SELECT trigger_name FROM information_schema.triggers "
                "WHERE event_object_table = 'usage_stats' AND trigger_schema = DATABASE()"
            )
        return {name for (name,) in connection.exec_driver_sql(query)}


def test_the_rollup_triggers_exist_after_upgrade(backend, db_target):
    assert triggers_on_usage(db_target, backend) == TRIGGERS


def test_going_down_to_0008_drops_the_rollup_and_up_again_rebuilds_it(backend, db_target, manager):
    sessions = sessions_of(manager)
    insert_rows(
        db_target,
        sessions,
        [
            dict(
                session=0,
                input_tokens=HUGE,
                output_tokens=1,
                cache_read=2,
                cache_write=3,
                cost_usd=0.5,
                model=None,
                user_id="alice",
                timestamp=T0 + timedelta(hours=n),
            )
            for n in range(30)
        ],
    )
    before = rollup(db_target)
    assert before == scratch(db_target) and before
    manager.close()
    with raw_engine(db_target) as engine:
        downgrade_schema(engine, "0008")
        assert triggers_on_usage(db_target, backend) == set()
        assert "usage_daily" not in sa.inspect(engine).get_table_names()
        upgrade_schema(engine)
    assert triggers_on_usage(db_target, backend) == TRIGGERS
    assert rollup(db_target) == before


# -- the rollup follows every write ------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.lists(usage_rows(), min_size=1, max_size=6)),
        st.tuples(st.just("delete_session"), st.integers(0, 3)),
        st.tuples(st.just("forget_user"), st.sampled_from(USERS)),
        st.tuples(st.just("prune"), st.just(None)),
        st.tuples(st.just("move"), st.tuples(moments(), st.sampled_from(MODELS), st.sampled_from(USERS))),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=operations)
def test_the_rollup_equals_an_aggregation_from_scratch_after_any_writes(db_target, manager, operations):
    emptied(db_target)
    sessions = sessions_of(manager)
    for kind, argument in operations:
        if kind == "insert":
            insert_rows(db_target, sessions, argument)
        elif kind == "delete_session":
            with contextlib.suppress(SessionNotFound):
                manager.delete_session(sessions[argument], keep_usage=False)
        elif kind == "forget_user":
            manager.forget_user(argument)
        elif kind == "prune":
            for session in sessions[:2]:
                with contextlib.suppress(SessionNotFound):
                    manager.close_session(session, "done")
            manager.prune(timedelta(0), keep_usage=False)
        else:  # another program rewrites the first row's time, model and user
            moment, model, user = argument
            with raw_connection(db_target, begin=True) as connection:
                first = connection.execute(sa.select(sa.func.min(_usage.c.id))).scalar()
                connection.execute(
                    sa.update(_usage).where(_usage.c.id == first).values(timestamp=moment, model=model, user_id=user)
                )
        assert rollup(db_target) == scratch(db_target), kind
    assert manager.cost_overview() == expected_overview(db_target, None, None)


# -- the overview is exact for any bounds ---------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(usage_rows(), max_size=25),
    since=st.one_of(st.none(), moments()),
    until=st.one_of(st.none(), moments()),
)
def test_the_overview_over_any_bounds_equals_a_scan_of_the_rows(db_target, manager, rows, since, until):
    if since is not None and until is not None and until < since:
        since, until = until, since
    emptied(db_target)
    insert_rows(db_target, sessions_of(manager), rows)
    assert manager.cost_overview(since, until) == expected_overview(db_target, since, until)


def test_bounds_a_microsecond_either_side_of_a_row_at_midnight(manager, db_target):
    sessions = sessions_of(manager)
    midnight = T0 + timedelta(days=1)
    insert_rows(
        db_target,
        sessions,
        [
            dict(
                session=0,
                input_tokens=1,
                output_tokens=0,
                cache_read=0,
                cache_write=0,
                cost_usd=1.0,
                model="m",
                user_id="alice",
                timestamp=moment,
            )
            for moment in (midnight - timedelta(microseconds=1), midnight, midnight + timedelta(microseconds=1))
        ],
    )
    micro = timedelta(microseconds=1)
    for since, until in [
        (midnight, None),
        (midnight + micro, None),
        (None, midnight),
        (None, midnight + micro),
        (midnight - micro, midnight + micro),
        (midnight, midnight),
        (T0, T0 + timedelta(days=3)),
    ]:
        assert manager.cost_overview(since, until) == expected_overview(db_target, since, until), (since, until)


# -- concurrency ------------------------------------------------------------------------------------

THREADS, RECORDS_EACH = 16, 15


def test_sixteen_threads_recording_at_once_lose_no_count(make_manager, db_target):
    managers = [make_manager() for _ in range(4)]
    sessions = [managers[0].create_session(Channel.MAIN, f"t{n}", user_id=USERS[n % 2]) for n in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def record(n: int) -> None:
        manager = managers[n % len(managers)]
        try:
            barrier.wait()
            for turn in range(RECORDS_EACH):
                # Half the threads share one (day, model, user) row of the rollup.
                model = "shared" if n % 2 == 0 else f"model-{n}"
                manager.record_usage(sessions[n], UsageRecord(3, 2, 1, HUGE, 0.25, model), turn=turn)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert rollup(db_target) == scratch(db_target)
    overview = managers[0].cost_overview()
    assert (overview.total_turns, overview.total_cost_usd) == (THREADS * RECORDS_EACH, THREADS * RECORDS_EACH / 4)
    assert overview.total_cache_write == THREADS * RECORDS_EACH * HUGE


# -- adopted files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RUST_FILES)
def test_an_adopted_rust_file_gets_its_rollup_built_from_its_rows(writable_copy, name):
    """The crate's costs are any floats: the database may add them in another order than Python."""
    path = writable_copy(name, "adopted.sqlite")
    SessionManager(path).close()
    target = str(path)
    built, expected = rollup(target), scratch(target)
    assert built.keys() == expected.keys() and built
    for key, (turns, cost, *tokens) in built.items():
        assert (turns, *tokens) == (expected[key][0], *expected[key][2:])
        assert cost == pytest.approx(expected[key][1], rel=1e-12)
    with SessionManager(path) as manager:
        for since in (None, T0 - timedelta(days=365, microseconds=1)):
            overview, scan = manager.cost_overview(since), expected_overview(target, since, None)
            assert (overview.total_turns, overview.total_input_tokens, overview.total_cache_read) == (
                scan.total_turns,
                scan.total_input_tokens,
                scan.total_cache_read,
            )
            assert overview.total_cost_usd == pytest.approx(scan.total_cost_usd, rel=1e-12)
            assert [(d.day, d.model, d.total_turns) for d in overview.by_day] == [
                (d.day, d.model, d.total_turns) for d in scan.by_day
            ]
