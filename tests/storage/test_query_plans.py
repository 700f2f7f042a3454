"""Every hot query is served by an index: the planner's own word, on every backend.

The statements are the ones the repositories really send: they are captured
with a ``before_cursor_execute`` listener while the public API runs, then
explained on the same database:

* SQLite: ``EXPLAIN QUERY PLAN``; a ``SCAN <table>`` line without ``USING
  INDEX`` / ``USING COVERING INDEX`` is a full table scan. SQLite plans by its
  built-in heuristics unless ``ANALYZE`` was run, which the library never does,
  so the plan here is the plan users get.
* PostgreSQL: ``EXPLAIN (FORMAT JSON)`` with ``enable_seqscan = off``, so a
  planner that would rather read a table this small page by page still shows
  whether an index can serve the query. A ``Seq Scan``, or an index scan with no
  ``Index Cond`` (a walk through the whole index), is a full scan.
* MariaDB: ``EXPLAIN`` after ``ANALYZE TABLE`` on a few thousand rows; access
  type ``ALL`` (table scan) or ``index`` (whole-index walk) is a full scan.

Walking a whole index *in order* is how ``list_sessions`` stops after ``limit``
rows, so that case allows an ordered index walk (never a table scan or a sort).
``cost_overview`` reads whole days from ``usage_daily`` (not among the tables
checked: it is read whole by design, one row per day, model and user) and only
the rows of partial days from ``usage_stats``, which must be index-backed.
:func:`test_a_dropped_index_is_detected` proves the checks can fail.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select, text

from starpod_session import Channel, SessionManager, UsageRecord
from starpod_session._common.search_query import indexed_words
from starpod_session.adk_store import AdkEvent, AdkMessage, AdkStaleSession, AdkStore
from starpod_session.backends.engine import to_url
from starpod_session.storage.models import (
    AdkAppStateRow,
    AdkEventRow,
    AdkSessionRow,
    AdkUserStateRow,
    MessageRow,
    SessionRow,
    ToolCallRow,
    UsageRow,
)
from starpod_session.storage.repositories import MessageRepository
from starpod_session.storage.repositories.search import WORDS_TABLE

from ..helpers import raw_connection, raw_engine

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SESSIONS, MESSAGES_EACH, USAGE_ROWS, DAYS = 300, 10, 3000, 300
#: MariaDB sorts a few thousand sessions rather than walk ``idx_session_recent`` for
#: the listing's twelve columns; it walks the index from some tens of thousands on.
LISTED_SESSIONS = 50_000

Statement = tuple[str, Any]
#: ADK sessions (``adk_store``): the first ``ADK_SESSIONS`` sessions, ``ADK_EVENTS_EACH`` events for each of
#: the first ``SESSIONS``, ten users of the app ``ADK_APP`` and one session in each of ``ADK_OTHER_APPS`` apps.
ADK_SESSIONS, ADK_EVENTS_EACH, ADK_APP, ADK_OTHER_APPS = 5000, 10, "app", 500
TABLES = {
    table.name
    for table in (
        SessionRow.__table__,
        MessageRow.__table__,
        UsageRow.__table__,
        ToolCallRow.__table__,
        AdkSessionRow.__table__,
        AdkEventRow.__table__,
        AdkAppStateRow.__table__,
        AdkUserStateRow.__table__,
    )
}
#: MariaDB's EXPLAIN names a table by its alias: the search's aliases of ``session_message_words``.
WORD_ALIAS = re.compile(r"w\d+_\d+")


@contextmanager
def captured() -> Iterator[list[Statement]]:
    """The statements every engine sends to its driver inside the block (reads and writes, no inserts)."""
    statements: list[Statement] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", capture)


def populate(target: str) -> dict[str, Any]:
    """Sessions, messages and usage rows enough for a server planner to prefer its indexes.

    ``LISTED_SESSIONS`` sessions; the first ``SESSIONS`` of them have ``MESSAGES_EACH``
    messages each (all counted as tool calls) and the ``USAGE_ROWS`` usage rows. Returns
    an open session of channel main (its id, key and user) for the calls to use.
    """
    with SessionManager(target):
        pass  # our schema, at head
    ids = [str(uuid.UUID(int=n + 1, version=4)) for n in range(LISTED_SESSIONS)]
    sessions, messages, usage = [], [], []
    for n, session_id in enumerate(ids):
        at = T0 + timedelta(hours=n)
        sessions.append(
            {
                "id": session_id,
                "created_at": at,
                "last_message_at": at,
                "is_closed": n % 3 == 0,
                "channel": "telegram" if n % 10 == 0 else "main",
                "channel_session_key": f"key-{n}",
                "user_id": f"user-{n % 10}",
                "is_read": True,
                "message_count": 0,
            }
        )
        if n < SESSIONS:
            messages += [
                {"session_id": session_id, "role": "user", "content": f"m{m} note{n}", "timestamp": at}
                for m in range(MESSAGES_EACH)
            ]
    usage.extend(
        {
            "session_id": ids[n % SESSIONS],
            "turn": n,
            "input_tokens": n,
            "output_tokens": n,
            "cache_read": 0,
            "cache_write": 0,
            "cost_usd": 0.01,
            "model": f"model-{n % 4}",
            "user_id": f"user-{n % 10}",
            "timestamp": T0 + timedelta(days=DAYS) * n / USAGE_ROWS,
        }
        for n in range(USAGE_ROWS)
    )
    with raw_engine(target) as engine:
        with engine.begin() as connection:
            connection.execute(insert(SessionRow.__table__), sessions)
            connection.execute(insert(MessageRow.__table__), messages)
            connection.execute(insert(ToolCallRow.__table__), tool_calls_of(connection))
            connection.execute(insert(UsageRow.__table__), usage)
            adk_sessions, adk_events = adk_rows(ids)
            connection.execute(insert(AdkSessionRow.__table__), adk_sessions)
            connection.execute(insert(AdkEventRow.__table__), adk_events)
            connection.execute(
                insert(AdkAppStateRow.__table__),
                [{"app_name": f"app-{n}", "state": "{}", "update_time": 0.0} for n in range(ADK_OTHER_APPS)],
            )
            connection.execute(
                insert(AdkUserStateRow.__table__),
                [
                    {"app_name": app, "user_id": f"user-{n}", "state": "{}", "update_time": 0.0}
                    for app in (ADK_APP, *(f"app-{n}" for n in range(ADK_OTHER_APPS)))
                    for n in range(10)
                ],
            )
            if connection.dialect.name != "sqlite" and connection.dialect.name != "postgresql":
                # MariaDB's search index is a table that save_message fills (migration 0010).
                connection.execute(
                    text(f"INSERT INTO {WORDS_TABLE} (word, message_id, hits) VALUES (:word, :message_id, :hits)"),
                    [
                        {"word": word, "message_id": message_id, "hits": hits}
                        for message_id, content in connection.execute(text("SELECT id, content FROM session_messages"))
                        for word, hits in indexed_words(content).items()
                    ],
                )
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            elif connection.dialect.name != "sqlite":
                connection.exec_driver_sql(
                    f"ANALYZE TABLE session_metadata, session_messages, usage_stats, tool_calls, {WORDS_TABLE}, "
                    "adk_sessions, adk_events, adk_app_states, adk_user_states"
                )
    open_main = next(n for n in range(SESSIONS) if n % 3 and n % 2)
    return {
        "session_id": ids[open_main],
        "key": f"key-{open_main}",
        "user_id": f"user-{open_main % 10}",
        "adk_id": f"adk-{open_main}",
        "adk_deletable": iter(range(SESSIONS, ADK_SESSIONS)),
    }


def adk_rows(ids: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """ADK sessions of the first ``ADK_SESSIONS`` sessions (their users'; every tenth in another app), with events."""
    sessions, events = [], []
    for n, session_id in enumerate(ids[:ADK_SESSIONS]):
        app = ADK_APP if n % 10 else f"app-{n % ADK_OTHER_APPS}"
        sessions.append(
            {
                "app_name": app,
                "user_id": f"user-{n % 10}",
                "id": f"adk-{n}",
                "session_id": session_id,
                "state": "{}",
                "create_time": float(n),
                "update_time": float(n),
                "revision": 0,
            }
        )
        if n < SESSIONS:
            events += [
                {"session_id": session_id, "id": f"e{e}", "timestamp": float(n + e), "event_data": "{}"}
                for e in range(ADK_EVENTS_EACH)
            ]
    return sessions, events


def adk_get(**config: Any) -> Call:
    return lambda m, d: AdkStore(m).get_session(ADK_APP, d["user_id"], d["adk_id"], **config)


def adk_append(m: SessionManager, d: dict[str, Any], *, stale: bool = False) -> object:
    """An event with a delta of every scope, a message and usage; or (``stale``) one refused by the check of
    the session's latest event, which a caller without a revision gets."""
    event = AdkEvent(
        id=str(uuid.uuid4()),
        timestamp=10.0**9,
        data="{}",
        state_delta={"app:a": 1, "user:u": 2, "s": 3},
        messages=[AdkMessage("user", "hello")],
        usage=UsageRecord(1, 1),
    )
    try:
        return AdkStore(m).append_event(
            ADK_APP,
            d["user_id"],
            d["adk_id"],
            event,
            revision=None,
            last_update_time=0.0 if stale else 1e10,
            last_event_id=None,
        )
    except AdkStaleSession:
        assert stale
        return None


def adk_append_at_known_revision(m: SessionManager, d: dict[str, Any]) -> object:
    """Two events through one store, the second at the revision the first left: the guarded UPDATE that
    skips the locking read (on PostgreSQL one statement holding the event, message and usage rows too)."""
    store = AdkStore(m)
    revision = None
    for _ in range(2):
        event = AdkEvent(
            id=str(uuid.uuid4()),
            timestamp=10.0**9,
            data="{}",
            state_delta={"s": 3},
            messages=[AdkMessage("user", "hello")],
            usage=UsageRecord(1, 1),
        )
        appended = store.append_event(
            ADK_APP, d["user_id"], d["adk_id"], event, revision=revision, last_update_time=1e10, last_event_id=None
        )
        revision = appended.revision
    return appended


def adk_delete(m: SessionManager, d: dict[str, Any]) -> object:
    n = next(d["adk_deletable"])
    return AdkStore(m).delete_session(ADK_APP if n % 10 else f"app-{n % ADK_OTHER_APPS}", f"user-{n % 10}", f"adk-{n}")


def tool_calls_of(connection: Any) -> list[dict[str, Any]]:
    """Every message counted as a tool call (one in ten a failed result), spread over ``DAYS`` like usage."""
    rows = connection.execute(text("SELECT id, session_id FROM session_messages ORDER BY id")).all()
    return [
        {
            "message_id": message_id,
            "session_id": session_id,
            "role": "tool_result" if n % 10 == 0 else "tool_use",
            "call_id": f"tu_{n // 2}",
            "tool_name": None if n % 10 == 0 else f"tool-{n % 7}",
            "is_error": n % 10 == 0,
            "timestamp": T0 + timedelta(days=DAYS) * n / len(rows),
        }
        for n, (message_id, session_id) in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def populated_databases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Backend → its populated database and ``populate``'s answer, filled once per module."""
    return {}


@pytest.fixture
def populated(
    backend: str, populated_databases, clean_database, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any]]:
    """A database holding ``populate``'s rows, populated once per backend for the whole module.

    Inserting 50,000 sessions cost more than the checks themselves; the calls explained
    here write a few rows more, which changes no plan. A server database emptied by
    another test in between is populated again.
    """
    if backend in populated_databases:
        target, data = populated_databases[backend]
        with raw_connection(target) as connection:
            if (
                connection.execute(select(func.count()).select_from(SessionRow.__table__)).scalar_one()
                >= LISTED_SESSIONS
            ):
                return target, data
    target = clean_database(backend, tmp_path_factory.mktemp("plans"))
    populated_databases[backend] = target, populate(target)
    return populated_databases[backend]


# -- reading plans --------------------------------------------------------------


def full_scans(target: str, statements: list[Statement], *, ordered_walk: bool = False) -> list[str]:
    """What in these statements' plans reads a whole table (or, unless ``ordered_walk``, a whole index)."""
    backend = to_url(target).get_backend_name()
    if backend == "sqlite":
        return _sqlite_full_scans(target, statements, ordered_walk)
    with raw_connection(target) as connection:
        if backend == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            return [
                problem
                for statement, parameters in statements
                for problem in _postgres_problems(
                    connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar(),
                    ordered_walk,
                )
            ]
        found = []
        for statement, parameters in statements:
            for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).mappings():
                table = row["table"] or ""  # None: no table read ("No tables used")
                if table not in TABLES and table != WORDS_TABLE and not WORD_ALIAS.fullmatch(table):
                    continue  # <derivedN>, <unionN>: a subquery's or CTE's own rows
                if row["type"] == "ALL" or (row["type"] == "index" and not ordered_walk):
                    found.append(f"{row['table']}: access type {row['type']} ({statement.split()[0]})")
        return found


def _sqlite_full_scans(target: str, statements: list[Statement], ordered_walk: bool) -> list[str]:
    found = []
    with sqlite3.connect(to_url(target).database) as raw:
        for statement, parameters in statements:
            for *_ids, detail in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters):
                # Scans of a subquery or CTE's own rows (SCAN usage_groups) read no table.
                if (
                    detail.startswith("SCAN ")
                    and detail.split()[1] in TABLES
                    and "USING INDEX" not in detail
                    and "USING COVERING INDEX" not in detail
                ):
                    found.append(detail)
                if ordered_walk and "TEMP B-TREE FOR ORDER BY" in detail:
                    found.append(f"{detail} (sorts instead of walking an index in order)")
    return found


def _postgres_problems(plan: Any, ordered_walk: bool) -> Iterator[str]:
    nodes = [(json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", ()))
        kind, table = node["Node Type"], node.get("Relation Name")
        if kind == "Seq Scan" and table in TABLES:  # usage_daily may be read whole (see the docstring)
            yield f"Seq Scan on {table}"
        elif kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node and not ordered_walk:
            yield f"{kind} of all of {node['Index Name']} on {table}"


# -- the hot queries ------------------------------------------------------------

Call = Callable[[SessionManager, dict[str, Any]], object]

HOT_QUERIES: dict[str, tuple[Call, bool]] = {
    # name: (public call, whether an ordered index walk is the intended plan)
    "find_open_by_key": (lambda m, d: m.resolve_session(Channel.MAIN, d["key"], user_id=d["user_id"]), False),
    "exists + title + insert (save_message)": (lambda m, d: m.save_message(d["session_id"], "user", "hi"), False),
    "exists + insert (record_usage)": (lambda m, d: m.record_usage(d["session_id"], UsageRecord(), 1), False),
    "get by id": (lambda m, d: m.get_session(d["session_id"]), False),
    "touch": (lambda m, d: m.touch_session(d["session_id"]), False),
    "messages by session, ordered by id": (lambda m, d: m.get_messages(d["session_id"]), True),
    "a page of messages": (lambda m, d: m.get_messages(d["session_id"], limit=3, before_id=10**9), True),
    "export: the message count and the pages after an id": (
        lambda m, d: m._transactions.read_prepared(
            lambda c: (
                MessageRepository(c).count_for_session(d["session_id"]),
                list(MessageRepository(c).pages(d["session_id"])),
            )
        ),
        True,
    ),
    "usage by session": (lambda m, d: m.session_usage(d["session_id"]), False),
    "overview with since": (lambda m, d: m.cost_overview(since=T0 + timedelta(days=DAYS - 10)), False),
    # Whole days from usage_daily; the rows of the two partial days by idx_usage_stats_timestamp.
    "overview, bounds within days": (
        lambda m, d: m.cost_overview(
            since=T0 + timedelta(days=DAYS - 10, hours=5, microseconds=7), until=T0 + timedelta(days=DAYS - 3, hours=7)
        ),
        False,
    ),
    "overview within one day": (
        lambda m, d: m.cost_overview(since=T0 + timedelta(days=5, hours=1), until=T0 + timedelta(days=5, hours=9)),
        False,
    ),
    # usage_daily only (not among TABLES: reading all of it is the point); no usage row is read.
    "overview, whole range": (lambda m, d: m.cost_overview(), False),
    "list_sessions order": (lambda m, d: m.list_sessions(20), True),
    "list_sessions, archived too": (lambda m, d: m.list_sessions(20, archived=None), True),
    "list_sessions of a user, not archived": (lambda m, d: m.list_sessions(20, user_id=d["user_id"]), True),
    "tool_use (save_message)": (
        lambda m, d: m.save_message(d["session_id"], "tool_use", '{"id": "tu_1", "name": "Bash"}'),
        False,
    ),
    "failed tool_result (save_message)": (
        lambda m, d: m.save_message(d["session_id"], "tool_result", '{"tool_use_id": "tu_1", "is_error": true}'),
        False,
    ),
    "tool calls with since": (lambda m, d: m.cost_overview(since=T0 + timedelta(days=DAYS - 10)).by_tool, False),
    # Each engine's full-text index (FTS5 table, GIN, MariaDB's table of words), then the message and session by key.
    "search two words": (lambda m, d: m.search_messages("note12 note1*"), False),
    # Google ADK (adk_store): sessions by (app, user, id), events in (timestamp, id) order, listings in ADK's order.
    "adk: a session with its events": (adk_get(), True),
    "adk: the newest events of a session": (adk_get(num_recent_events=3), True),
    "adk: the events from a time on": (adk_get(after_timestamp=1.0), True),
    "adk: a user's sessions": (lambda m, d: AdkStore(m).list_sessions(ADK_APP, d["user_id"]), True),
    "adk: an app's sessions and its users' states": (lambda m, d: AdkStore(m).list_sessions(ADK_APP), True),
    "adk: a user's state": (lambda m, d: AdkStore(m).get_user_state(ADK_APP, d["user_id"]), False),
    "adk: an event with its deltas, message and usage": (adk_append, False),
    "adk: an event refused by the stale check": (lambda m, d: adk_append(m, d, stale=True), False),
    "adk: an event at the revision the store last wrote": (adk_append_at_known_revision, False),
    "adk: deleting a session": (adk_delete, False),
}


def statements_of(target: str, call: Call, data: dict[str, Any]) -> list[Statement]:
    with SessionManager(target) as manager, captured() as statements:
        call(manager, data)
    assert statements, "the call sent no statement to explain"
    return statements


@pytest.mark.parametrize("query", list(HOT_QUERIES))
def test_hot_queries_use_an_index(populated, query):
    target, data = populated
    call, ordered_walk = HOT_QUERIES[query]
    statements = statements_of(target, call, data)
    assert full_scans(target, statements, ordered_walk=ordered_walk) == []


@contextmanager
def indexes_dropped(target: str, table: str, indexes: dict[str, str]) -> Iterator[None]:
    """Drop the indexes for the block, then put them back (server databases are reused between tests).

    ``indexes`` maps each name to ``"UNIQUE |columns"`` or ``"|columns"``.
    """
    with raw_engine(target) as engine:
        on = "" if engine.dialect.name != "mariadb" and engine.dialect.name != "mysql" else f" ON {table}"
        try:
            with engine.begin() as connection:
                for index in indexes:
                    connection.execute(text(f"DROP INDEX {index}{on}"))
            yield
        finally:
            with engine.begin() as connection:
                for index, definition in indexes.items():
                    unique, columns = definition.split("|")
                    connection.execute(text(f"CREATE {unique}INDEX {index} ON {table} ({columns})"))


def indexes_used(target: str, statements: list[Statement]) -> set[str]:
    """The indexes the planner reads for these statements, by name."""
    return {index for _table, index in accesses(target, statements) if index}


def accesses(target: str, statements: list[Statement]) -> list[tuple[str | None, str | None]]:
    """Each read of a table or index in these statements' plans: (table, index), either None when not named."""
    backend = to_url(target).get_backend_name()
    if backend == "sqlite":
        with sqlite3.connect(to_url(target).database) as raw:
            details = [
                row[3].split()
                for statement, parameters in statements
                for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
        return [
            (words[1], next((word for word in words if word.startswith(("idx_", "uq_"))), None))
            for words in details
            if words[0] in ("SCAN", "SEARCH")
        ]
    with raw_connection(target) as connection:
        if backend == "postgresql":
            found: list[tuple[str | None, str | None]] = []
            for statement, parameters in statements:
                plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()
                nodes = [(json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]]
                while nodes:
                    node = nodes.pop()
                    nodes.extend(node.get("Plans", ()))
                    if "Relation Name" in node or "Index Name" in node:
                        found.append((node.get("Relation Name"), node.get("Index Name")))
            return found
        return [
            (row["table"], row["key"])
            for statement, parameters in statements
            for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).mappings()
        ]


def test_the_overview_scans_each_partial_day_once(populated):
    # MariaDB computes a CTE again at each reference: the overview's edge scans ran four times each.
    target, data = populated
    statements = statements_of(target, HOT_QUERIES["overview, bounds within days"][0], data)
    reads = [index for table, index in accesses(target, statements) if table == UsageRow.__tablename__]
    assert len(reads) == 2, reads  # how each is read: test_hot_queries_use_an_index


@pytest.mark.parametrize(
    ("filters", "index"),
    [({"user_id": "user-3"}, "idx_session_user_recent"), ({"channel": "telegram"}, "idx_session_channel_recent")],
)
def test_a_filtered_listing_walks_its_own_index_in_order(populated, filters, index):
    """Listing one user's or one channel's sessions reads that filter's index, in order, with no sort."""
    target, data = populated
    statements = statements_of(target, lambda m, _d: m.list_sessions(20, **filters), data)
    assert index in indexes_used(target, statements)
    assert full_scans(target, statements, ordered_walk=True) == []


def test_a_dropped_index_is_detected(populated):
    """Without the indexes leading with ``session_id`` the per-session usage query must be reported as a scan."""
    target, data = populated
    call, ordered_walk = HOT_QUERIES["usage by session"]
    session_indexes = {
        "idx_usage_stats_session": "|session_id",
        # The idempotency keys' unique index leads with session_id as well.
        "uq_usage_stats_session_id_usage_key": "UNIQUE |session_id, usage_key",
    }
    with indexes_dropped(target, "usage_stats", session_indexes):
        statements = statements_of(target, call, data)
        assert full_scans(target, statements, ordered_walk=ordered_walk) != []
    assert full_scans(target, statements_of(target, call, data), ordered_walk=ordered_walk) == []


# -- idempotency keys --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m, d: m.save_message(d["session_id"], "user", "hi", message_key="plan"),
        lambda m, d: m.record_usage(d["session_id"], UsageRecord(100, 10, 1000, 5, 0.25, "opus"), 1, usage_key="plan"),
    ],
    ids=["save_message", "record_usage"],
)
def test_keyed_writes_and_their_repeats_use_an_index(populated, call):
    """A write with an idempotency key (api/test_idempotency.py) looks the key up by index, first time and repeat."""
    target, data = populated
    assert full_scans(target, statements_of(target, call, data), ordered_walk=False) == []
    # The repeat finds the first row by its key.
    assert full_scans(target, statements_of(target, call, data), ordered_walk=False) == []


# -- plans that stay right as a table grows ---------------------------------------------------------------------


def test_a_key_look_up_keeps_its_index_as_the_table_grows_on_postgresql(backend, make_manager):
    """psycopg prepares a statement on its fifth run, and PostgreSQL may then keep one generic plan for it.

    Planned on a table of a few rows that no ANALYZE has seen yet (a new database),
    the open-session look-up's generic plan walked every session of the channel
    once the table had grown, instead of the one-open-session index: 2.7 ms instead
    of 0.35 ms after 4,000 new sessions. The look-up is never prepared (``Prepared(...,
    replan=True)``): planned per run, it keeps its index whatever the table held at
    first. Should it be prepared again, its plan must still be the right one.
    """
    if backend != "postgresql":
        pytest.skip("psycopg's prepared statements and PostgreSQL's plan cache")
    manager = make_manager(pool_size=1)  # one connection: the one whose statements are checked
    for n in range(20):
        manager.create_session("main", f"small-{n}")
    for _ in range(10):  # prepared, and planned on the small table
        manager.open_session(Channel.TELEGRAM, "hot")
    for n in range(1500):
        manager.open_session(Channel.TELEGRAM, f"grown-{n}")
    pooled = manager._transactions.engine.raw_connection()
    try:
        cursor = pooled.cursor()
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        look_ups = [
            name
            for name, statement in cursor.fetchall()
            if statement.lstrip().startswith("SELECT session_metadata.id") and "open_slot = 1" in statement
        ]
        plans = []
        for name in look_ups:
            cursor.execute(f"EXPLAIN EXECUTE {name}('telegram', 'hot', 'admin')")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        pooled.rollback()
    finally:
        pooled.close()
    assert all("uq_session_one_open_per_key" in plan for plan in plans), plans
    assert manager.open_session(Channel.TELEGRAM, "hot").created is False


@pytest.mark.parametrize("listened", [False, True], ids=["fast_path", "listened"])
def test_the_key_look_up_is_never_prepared_on_postgresql_on_either_path(backend, make_manager, listened):
    """``replan`` holds on the Core path too, which every call takes while a tracer listens."""
    if backend != "postgresql":
        pytest.skip("psycopg's prepared statements and PostgreSQL's plan cache")
    manager = make_manager(pool_size=1)  # one connection: the one whose statements are checked
    listener = lambda *args: None  # noqa: E731
    if listened:
        event.listen(manager._engine, "before_cursor_execute", listener)
    try:
        for _ in range(10):  # psycopg prepares a statement on its fifth run
            manager.open_session(Channel.TELEGRAM, "hot")
    finally:
        if listened:
            event.remove(manager._engine, "before_cursor_execute", listener)
    pooled = manager._transactions.engine.raw_connection()
    try:
        cursor = pooled.cursor()
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall() if "open_slot = 1" in statement]
        assert cursor.connection.prepare_threshold == 5  # psycopg's default, back after each call
        pooled.rollback()
    finally:
        pooled.close()
    assert prepared == []
