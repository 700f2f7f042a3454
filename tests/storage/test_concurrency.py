"""Correct under concurrency and crashes, on every backend.

Threads share one manager (as a server process would), processes open the same
database, an event loop drives the manager through ``asyncio.to_thread``, and a
writer killed with SIGKILL leaves a consistent SQLite file holding every call it
acknowledged. Racers start together on a barrier; nothing waits by sleeping.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import timedelta
from typing import TypeVar

import pytest
import sqlalchemy as sa

from starpod_session import (
    AUTO_CLOSE_SUMMARY,
    Channel,
    Continue,
    New,
    OpenedSession,
    SessionManager,
    StorageBusy,
    UsageRecord,
)
from starpod_session._clock import utc_now
from starpod_session.storage.models import SessionRow
from starpod_session.storage.repositories import SessionRepository
from starpod_session.storage.repositories.sessions import INSERT_TRIES

from ..helpers import raw_engine

T = TypeVar("T")

THREADS = 16
ROUNDS = 50
#: Seeds every random choice of this module; replay a run with STARPOD_SESSION_TEST_SEED=<seed>.
SEED = int(os.environ.get("STARPOD_SESSION_TEST_SEED", "1306"))
#: Every wait on a barrier gives up after this long, so a lost party fails the test instead of hanging it.
BARRIER_TIMEOUT = 120
SESSIONS = SessionRow.__table__


@pytest.fixture
def direct(db_target: str) -> Iterator[sa.Engine]:
    """An engine of its own on the test's database, beside the managers under test.

    Ask for ``manager`` too for a schema."""
    with raw_engine(db_target) as engine:
        yield engine


def race(pool: ThreadPoolExecutor, call: Callable[[int], T], parties: int = THREADS) -> list[T]:
    """Run ``call(0) … call(parties - 1)`` on the pool's threads, all released at once."""
    start = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)

    def party(number: int) -> T:
        start.wait()
        return call(number)

    futures = [pool.submit(party, number) for number in range(parties)]
    return [future.result() for future in futures]


def make_stale(engine: sa.Engine, session_ids: list[str]) -> None:
    """Move the sessions' last activity a day into the past, behind the manager's back."""
    with engine.begin() as connection:
        connection.execute(
            sa.update(SESSIONS)
            .where(SESSIONS.c.id.in_(session_ids))
            .values(last_message_at=utc_now() - timedelta(days=1))
        )


def sessions_by_key(engine: sa.Engine) -> dict[str, list[tuple[str, bool, str | None]]]:
    """Every session as ``key → [(id, is_closed, summary)]``."""
    found: dict[str, list[tuple[str, bool, str | None]]] = {}
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(SESSIONS.c.channel_session_key, SESSIONS.c.id, SESSIONS.c.is_closed, SESSIONS.c.summary)
        )
        for key, session_id, is_closed, summary in rows:
            found.setdefault(key, []).append((session_id, is_closed, summary))
    return found


# -- one open session per key, one report of an auto-close -------------------------------------


def via_open_session(manager: SessionManager, key: str) -> tuple[str, str | None]:
    opened = manager.open_session(Channel.TELEGRAM, key)
    assert isinstance(opened, OpenedSession)
    return opened.session_id, opened.closed_session_id


def via_resolve_then_create(manager: SessionManager, key: str) -> tuple[str, str | None]:
    match manager.resolve_session(Channel.TELEGRAM, key):
        case Continue(session_id=session_id):
            return session_id, None
        case New(closed_session_id=closed):
            return manager.create_session(Channel.TELEGRAM, key), closed
    raise AssertionError("resolve_session returned neither Continue nor New")


PATHS = {
    "open_session": lambda number: via_open_session,
    "resolve_then_create": lambda number: via_resolve_then_create,
    # Half the callers take each path, against the same key at the same moment.
    "mixed": lambda number: (via_open_session, via_resolve_then_create)[number % 2],
}


@pytest.mark.parametrize("path", PATHS)
def test_racing_callers_share_one_open_session_and_one_of_them_learns_of_the_auto_close(manager, direct, path):
    pick = PATHS[path]
    keys = [f"chat-{round_}" for round_ in range(ROUNDS)]
    # Odd rounds race on a key whose open session has gone stale, even rounds on a new key.
    stale = {key: manager.create_session(Channel.TELEGRAM, key) for key in keys[1::2]}
    make_stale(direct, list(stale.values()))

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = {key: race(pool, lambda n, key=key: pick(n)(manager, key)) for key in keys}

    stored = sessions_by_key(direct)
    for key, results in outcomes.items():
        ids = {session_id for session_id, _closed in results}
        assert len(ids) == 1, f"{key}: racing callers got different sessions {ids}"
        [session_id] = ids
        open_rows = [row for row in stored[key] if not row[1]]
        assert open_rows == [(session_id, False, None)], f"{key}: open sessions {open_rows}"
        reported = [closed for _session_id, closed in results if closed is not None]
        if key in stale:
            assert reported == [stale[key]], f"{key}: the auto-close was reported {len(reported)} times"
            assert session_id != stale[key]
            assert sorted(stored[key]) == sorted([(session_id, False, None), (stale[key], True, AUTO_CLOSE_SUMMARY)])
        else:
            assert reported == []
            assert len(stored[key]) == 1, f"{key}: {len(stored[key])} sessions were created"


def test_racing_open_session_calls_report_exactly_one_creator(manager):
    with ThreadPoolExecutor(THREADS) as pool:
        for round_ in range(ROUNDS // 5):
            results = race(pool, lambda n, key=f"new-{round_}": manager.open_session(Channel.MAIN, key))
            assert len({r.session_id for r in results}) == 1
            assert sum(r.created for r in results) == 1


OPENERS_AND_CLOSERS_CALLS = 100


def test_threads_opening_and_closing_one_key_get_no_error_and_leave_at_most_one_open_session(manager, direct):
    """The winner of an insert may be closed before a loser re-reads the key: the loser tries again."""

    def open_and_sometimes_close(number: int) -> list[str]:
        choices = random.Random(f"{SEED}-{number}")
        opened = []
        for _ in range(OPENERS_AND_CLOSERS_CALLS):
            session_id = manager.open_session(Channel.TELEGRAM, "churn").session_id
            opened.append(session_id)
            if choices.random() < 0.5:
                manager.close_session(session_id, "closed by a racing caller")
        return opened

    with ThreadPoolExecutor(THREADS) as pool:
        opened = race(pool, open_and_sometimes_close)  # any exception fails here, with its seed below
    assert sum(map(len, opened)) == THREADS * OPENERS_AND_CLOSERS_CALLS, f"seed {SEED}"
    rows = sessions_by_key(direct)["churn"]
    assert len([row for row in rows if not row[1]]) <= 1, f"seed {SEED}: several open sessions"


# -- the same guarantees, checked one step at a time (every backend, SQLite too) --------------------


def insert_open_row(connection: sa.Connection, session_id: str, key: str) -> None:
    now = utc_now()
    connection.execute(
        sa.insert(SessionRow.__table__).values(
            id=session_id,
            created_at=now,
            last_message_at=now,
            is_closed=False,
            message_count=0,
            channel="telegram",
            channel_session_key=key,
            user_id="admin",
            is_read=True,
        )
    )


def test_a_second_open_row_for_a_key_is_refused_by_the_database_and_a_closed_one_is_not(manager, direct):
    with direct.begin() as connection:
        insert_open_row(connection, "first", "k")
    with pytest.raises(sa.exc.IntegrityError), direct.begin() as connection:
        insert_open_row(connection, "second", "k")
    with direct.begin() as connection:
        assert SessionRepository(connection).close_if_open("first", "done")
        insert_open_row(connection, "third", "k")
    assert sorted(sessions_by_key(direct)["k"]) == [("first", True, "done"), ("third", False, None)]


def test_closing_an_open_session_twice_reports_the_close_once(manager, direct):
    with direct.begin() as connection:
        insert_open_row(connection, "only", "k")
        sessions = SessionRepository(connection)
        assert [sessions.close_if_open("only", "first"), sessions.close_if_open("only", "second")] == [True, False]
    assert sessions_by_key(direct)["k"] == [("only", True, "first")]


def test_a_stale_session_closed_by_another_caller_is_not_reported_by_this_one(manager, direct, monkeypatch):
    stale = manager.create_session(Channel.TELEGRAM, "k")
    make_stale(direct, [stale])
    close_if_open = SessionRepository.close_if_open

    def closed_first_by_another_caller(self, session_id: str, summary: str) -> bool:
        assert close_if_open(self, session_id, "closed by the other caller")
        return close_if_open(self, session_id, summary)

    monkeypatch.setattr(SessionRepository, "close_if_open", closed_first_by_another_caller)
    assert manager.resolve_session(Channel.TELEGRAM, "k") == New(closed_session_id=None)
    opened = manager.open_session(Channel.TELEGRAM, "k")
    assert (opened.closed_session_id, opened.created) == (None, True)
    assert manager.get_session(stale).summary == "closed by the other caller"


# -- losing the insert to a session that is closed before the re-read ------------------------------


def interleave_a_racing_winner(monkeypatch: pytest.MonkeyPatch, *, reopen: bool) -> list[str]:
    """Make ``insert_unless_open`` lose its insert to a winner that is then closed, deterministically.

    The key's open session (the winner, committed before the call) is hidden from
    every look-up until our insert has conflicted with it, as it would be from a
    reader that looked before the winner committed. Each look-up after a conflict
    first closes the winner, as a racing ``close_session`` or auto-close would;
    with ``reopen`` another winner opens at once, so every insert conflicts.
    Returns the ids of the winners that were closed.
    """
    find_open_by_key = SessionRepository.find_open_by_key
    insert_open = SessionRepository.insert_open
    conflicts: list[int] = []
    closed: list[str] = []

    def conflicting_insert(self: SessionRepository, **row: object) -> bool:
        inserted = insert_open(self, **row)
        if not inserted:
            conflicts.append(1)
        return inserted

    def look_up(self: SessionRepository, channel: str, key: str, user_id: str):
        found = find_open_by_key(self, channel, key, user_id)
        if len(conflicts) > len(closed) and found is not None:
            self.close(found[0], "closed by a racing caller")
            closed.append(found[0])
            if reopen:
                winner = f"winner-{len(closed)}"
                assert self.insert_open(
                    session_id=winner, channel=channel, key=key, user_id=user_id, triggered_by=None, now=utc_now()
                )
            return find_open_by_key(self, channel, key, user_id) if not reopen else None
        return None if not conflicts or reopen else found

    monkeypatch.setattr(SessionRepository, "insert_open", conflicting_insert)
    monkeypatch.setattr(SessionRepository, "find_open_by_key", look_up)
    return closed


OPENERS = {
    "open_session": lambda manager: manager.open_session(Channel.TELEGRAM, "k").session_id,
    "create_session": lambda manager: manager.create_session(Channel.TELEGRAM, "k"),
}


@pytest.mark.parametrize("opener", OPENERS)
def test_an_insert_lost_to_a_session_closed_before_the_reread_is_tried_again(manager, direct, monkeypatch, opener):
    winner = manager.create_session(Channel.TELEGRAM, "k")
    closed = interleave_a_racing_winner(monkeypatch, reopen=False)
    session_id = OPENERS[opener](manager)
    monkeypatch.undo()
    assert closed == [winner]
    assert session_id != winner
    assert sorted(sessions_by_key(direct)["k"]) == sorted(
        [(winner, True, "closed by a racing caller"), (session_id, False, None)]
    )


@pytest.mark.parametrize("opener", OPENERS)
def test_an_insert_lost_again_and_again_gives_storage_busy_and_writes_nothing(manager, direct, monkeypatch, opener):
    winner = manager.create_session(Channel.TELEGRAM, "k")
    closed = interleave_a_racing_winner(monkeypatch, reopen=True)
    with pytest.raises(StorageBusy, match=f"{INSERT_TRIES} times"):
        OPENERS[opener](manager)
    monkeypatch.undo()
    assert len(closed) == INSERT_TRIES - 1  # each insert conflicted; a look-up followed all but the last
    assert sessions_by_key(direct)["k"] == [(winner, False, None)]


# -- appends from many threads and processes ------------------------------------------------------

PER_WRITER = 500
THREAD_WRITERS = 16
PROCESS_WRITERS = 4


def content(writer: int, index: int) -> str:
    return f"w{writer}-{index:05d}"


def write_messages(manager: SessionManager, session_id: str, writer: int, start: threading.Barrier) -> list[int]:
    role = "user" if writer % 2 == 0 else "assistant"
    start.wait(BARRIER_TIMEOUT)
    return [manager.save_message(session_id, role, content(writer, index)) for index in range(PER_WRITER)]


def process_writer(target: str, session_id: str, writer: int, start, results) -> None:
    """Runs in a spawned process: its own manager on the same database."""
    try:
        with SessionManager(target) as manager:
            results.put((writer, write_messages(manager, session_id, writer, start)))
    except BaseException:
        results.put((writer, traceback.format_exc()))
        start.abort()


def test_messages_from_threads_and_processes_are_each_stored_once_in_writer_order(manager, db_target):
    session_id = manager.create_session(Channel.MAIN, "busy")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(THREAD_WRITERS + PROCESS_WRITERS)
    results = context.Queue()
    process_numbers = range(THREAD_WRITERS, THREAD_WRITERS + PROCESS_WRITERS)
    processes = [
        context.Process(target=process_writer, args=(db_target, session_id, writer, start, results))
        for writer in process_numbers
    ]
    for process in processes:
        process.start()
    try:
        with ThreadPoolExecutor(THREAD_WRITERS) as pool:
            futures = {
                writer: pool.submit(write_messages, manager, session_id, writer, start)
                for writer in range(THREAD_WRITERS)
            }
            returned = {writer: future.result() for writer, future in futures.items()}
        for _ in processes:
            writer, ids = results.get(timeout=BARRIER_TIMEOUT)
            assert not isinstance(ids, str), f"process writer {writer} failed:\n{ids}"
            returned[writer] = ids
    finally:
        for process in processes:
            process.join(BARRIER_TIMEOUT)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * PROCESS_WRITERS

    messages = manager.get_messages(session_id)
    writers = THREAD_WRITERS + PROCESS_WRITERS
    assert len(messages) == writers * PER_WRITER
    assert Counter(m.content for m in messages).most_common(1)[0][1] == 1, "a message was stored twice"
    ids = [m.id for m in messages]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for writer in range(writers):
        mine = [m for m in messages if m.content.startswith(f"w{writer}-")]
        assert [m.content for m in mine] == [content(writer, index) for index in range(PER_WRITER)]
        assert [m.id for m in mine] == returned[writer], f"writer {writer}: stored ids differ from returned ones"
        assert returned[writer] == sorted(returned[writer])
    # The first user message to commit titled the session: some even writer's first one.
    assert manager.get_session(session_id).title in {content(writer, 0) for writer in range(0, writers, 2)}


# -- an asyncio host ------------------------------------------------------------------------------

ASYNC_CALLS = 200
ASYNC_KEYS = 10
INPUT_TOKENS, OUTPUT_TOKENS, COST = 3, 5, 0.25


def test_an_event_loop_sharing_one_manager_through_to_thread_sees_consistent_state(manager):
    session_id = manager.create_session(Channel.MAIN, "async-host")
    usage = UsageRecord(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS, cost_usd=COST, model="m")
    calls: list[tuple[str, Callable[[], object]]] = []
    for n in range(ASYNC_CALLS):
        kind = ("open", "message", "usage", "read_messages", "read_usage")[n % 5]
        calls.append(
            (
                kind,
                {
                    "open": lambda n=n: manager.open_session(Channel.TELEGRAM, f"key-{n // 5 % ASYNC_KEYS}"),
                    "message": lambda n=n: manager.save_message(session_id, "assistant", f"m-{n:03d}"),
                    "usage": lambda n=n: manager.record_usage(session_id, usage, turn=n),
                    "read_messages": lambda: manager.get_messages(session_id),
                    "read_usage": lambda: manager.session_usage(session_id),
                }[kind],
            )
        )

    async def host() -> list[object]:
        # More workers than the engine's pool holds connections, so calls also queue for one.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
        return await asyncio.gather(*(asyncio.to_thread(call) for _kind, call in calls))

    outcomes = list(zip([kind for kind, _call in calls], asyncio.run(host()), strict=True))

    written = sorted(f"m-{n:03d}" for n in range(ASYNC_CALLS) if n % 5 == 1)
    turns = sorted(n for n in range(ASYNC_CALLS) if n % 5 == 2)
    opened: dict[str, set[str]] = {}
    for (kind, result), n in zip(outcomes, range(ASYNC_CALLS), strict=True):
        if kind == "open":
            opened.setdefault(f"key-{n // 5 % ASYNC_KEYS}", set()).add(result.session_id)
        elif kind == "read_messages":
            # A read sees whole calls only: a subset of the writes, without duplicates.
            seen = [m.content for m in result]
            assert len(seen) == len(set(seen)) and set(seen) <= set(written)
        elif kind == "read_usage":
            # Sums and count come from one snapshot.
            assert result.total_input_tokens == INPUT_TOKENS * result.total_turns
            assert result.total_output_tokens == OUTPUT_TOKENS * result.total_turns
            assert result.total_cost_usd == pytest.approx(COST * result.total_turns)
            assert result.total_turns <= len(turns)

    assert all(len(ids) == 1 for ids in opened.values()) and len(opened) == ASYNC_KEYS
    for key, (session_id_of_key,) in opened.items():
        assert manager.open_session(Channel.TELEGRAM, key).session_id == session_id_of_key
    assert sorted(m.content for m in manager.get_messages(session_id)) == written
    summary = manager.session_usage(session_id)
    assert (summary.total_turns, summary.total_input_tokens, summary.total_output_tokens) == (
        len(turns),
        INPUT_TOKENS * len(turns),
        OUTPUT_TOKENS * len(turns),
    )
    assert summary.total_cost_usd == pytest.approx(COST * len(turns))
    open_sessions = [s for s in manager.list_sessions(100) if not s.is_closed]
    assert len(open_sessions) == ASYNC_KEYS + 1


# -- SIGKILL in the middle of writing (SQLite) ------------------------------------------------------

#: Writes a message and a usage row per step for ever, printing one line per call once it returned.
CRASH_WRITER = """
import itertools, sys
from starpod_session import SessionManager, UsageRecord

target, session_id = sys.argv[1], sys.argv[2]
with SessionManager(target) as manager:
    for n in itertools.count():
        message_id = manager.save_message(session_id, "user", f"c-{n:06d}")
        print(f"message {n} {message_id}", flush=True)
        manager.record_usage(session_id, UsageRecord(input_tokens=n, output_tokens=1, cost_usd=0.001), turn=n)
        print(f"usage {n}", flush=True)
"""

CRASH_ROUNDS = 4


@pytest.mark.parametrize("round_", range(CRASH_ROUNDS), ids=lambda n: f"sqlite-{n}")
def test_a_writer_killed_at_a_random_moment_leaves_a_sound_file_with_every_acknowledged_call(tmp_path, round_):
    seed = SEED + round_
    kill_after = random.Random(seed).randint(1, 600)
    target = str(tmp_path / "crash.db")
    with SessionManager(target) as manager:
        session_id = manager.create_session(Channel.MAIN, "crash")

    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, target, session_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < kill_after:
            line = child.stdout.readline()
            assert line, f"the writer died on its own (seed {seed}):\n{child.stderr.read()}"
            acknowledged.append(line)
        os.kill(child.pid, signal.SIGKILL)
        # Lines already in the pipe were printed after their call returned: acknowledged as well.
        acknowledged.extend(child.stdout.readlines())
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    messages: dict[int, int] = {}  # step → message id
    turns: list[int] = []
    for line in acknowledged:
        kind, step, *message_id = line.split()
        if kind == "message":
            messages[int(step)] = int(message_id[0])
        else:
            turns.append(int(step))

    with closing(sqlite3.connect(target)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}"
        stored_turns = [turn for (turn,) in raw.execute("SELECT turn FROM usage_stats ORDER BY id")]
    with SessionManager(target) as manager:
        stored = manager.get_messages(session_id)
        assert manager.get_session(session_id).title == "c-000000"
    # Every acknowledged call is there; beyond them at most the one call in flight at the kill.
    expected = [f"c-{n:06d}" for n in range(len(messages))]
    contents = [m.content for m in stored]
    assert contents[: len(expected)] == expected, f"seed {seed}"
    assert len(contents) - len(expected) <= 1, f"seed {seed}"
    assert {n: stored[n].id for n in messages} == messages, f"seed {seed}"
    assert stored_turns[: len(turns)] == turns == list(range(len(turns))), f"seed {seed}"
    assert len(stored_turns) - len(turns) <= 1, f"seed {seed}"


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "plain"])
def test_prepared_reads_see_one_snapshot_only_when_asked(manager, backend, snapshot):
    # Work of several statements that must agree (export_transcript) reads one snapshot;
    # a plain read on a server reads what was committed before each statement.
    session_id = manager.create_session(Channel.MAIN, "k")

    def work(connection):
        repository = SessionRepository(connection)
        before = repository.get(session_id).title
        manager.save_message(session_id, "user", "committed meanwhile")  # another pooled connection
        return before, repository.get(session_id).title

    before, after = manager._transactions.read_prepared(work, snapshot=snapshot)
    # SQLite's read transactions always see one snapshot.
    assert before is None
    assert after == (None if snapshot or backend == "sqlite" else "committed meanwhile")


def test_a_mariadb_url_refuses_a_racing_open_session_as_a_mysql_url_does(backend, db_target):
    """``mariadb+pymysql://`` names MariaDB's dialect by its own name: the insert that lost the race
    for a key's open session is refused (False), not raised, as under ``mysql+pymysql://``."""
    if backend != "mariadb":
        pytest.skip("the MariaDB server's two URL spellings")
    url = sa.make_url(db_target).set(drivername="mariadb+pymysql")
    values = dict(channel="telegram", key="k", user_id="u", triggered_by=None, now=utc_now())
    with raw_engine(url) as engine, engine.begin() as connection:
        assert connection.dialect.name == "mariadb"
        sessions = SessionRepository(connection)
        assert sessions.insert_open(session_id="first", **values)
        assert not sessions.insert_open(session_id="second", **values)  # the winner's row was there first
