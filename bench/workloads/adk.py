"""Google ADK (group ``adk``): ``StarpodSessionService`` beside ADK's own stores and the floor of ADK's types.

Side by side in one run, interleaved in blocks, each store on a database of its own
(ADK's two stores both name their tables ``sessions`` and ``events``; ours are
``adk_*``), the same events and sessions through each store's public calls:

* ours: ``StarpodSessionService(SessionManager(url))``;
* ``SqliteSessionService`` (SQLite only: it is SQLite-only);
* ``DatabaseSessionService`` on the same backend (``sqlite+aiosqlite``, ``postgresql+psycopg``,
  ``mysql+aiomysql``: it needs greenlet and an async driver, which the ``adk-bench`` extra installs);
* the floor: the same ADK objects built from their stored JSON with nothing else
  (``Event.model_validate_json`` of each event, ``Session(...)`` around them, or
  ``Session(...)`` of each listed session with its state parsed), the JSON read
  from our tables once before timing: what ADK's types cost whoever stores them.

Workloads: append 1,000 events one by one (a user or model text event, every other
one with usage metadata, every fifth with a state delta; the events made before the
timing, as an agent hands them over); ``get_session`` of a
3,000-event session, whole and with ``num_recent_events=50``; ``list_sessions`` of
one user with 2,000 and with 10,000 sessions. Targets (issue #29): appends at least
10x faster than ``DatabaseSessionService`` and 3x than ``SqliteSessionService``; every
read faster than both and within 1.5x of the floor.

Each call is one ``run_until_complete`` on one event loop, the same for every store.
The reads are timed with the objects made before them frozen (``gc.freeze``): a full
collection inside a timed call then walks what the calls themselves made, not the
whole benchmark process (the other stores, their sessions), which cost 50-70 ms at
whichever call crossed the collector's threshold, ours or the floor's, and made the
medians of either side swing by half. Every side is timed under the same collector.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Coroutine
from typing import Any

from datasets import Target
from harness import Report, Scale, Timing, bare_thread_hop, frozen_heap, interleaved
from sqlalchemy.engine import URL

from starpod_session import SessionManager

#: Per scale (by its list_sessions_rows): appends; events of the long session and calls of its two reads
#: (whole, last 50); (sessions listed, calls) of each listing.
SIZES: dict[str, tuple[int, tuple[int, int, int], tuple[tuple[int, int], ...]]] = {
    "full": (1_000, (3_000, 20, 200), ((2_000, 50), (10_000, 20))),
    "quick": (300, (1_000, 10, 50), ((500, 20), (2_000, 10))),
    "smoke": (10, (60, 2, 2), ((20, 2), (40, 2))),
}
APP, USER = "bench", "ada"
#: Untimed appends before the timed ones, per store (``interleaved``'s warm-up).
_WARMUP = 3


def run(target: Target, scale: Scale, report: Report) -> None:
    if importlib.util.find_spec("google.adk") is None:
        print("(adk: skipped, google-adk is not installed: pip install -e '.[adk]')", flush=True)
        return
    size = "full" if scale.list_sessions_rows >= 100_000 else "quick" if scale.list_sessions_rows >= 10_000 else "smoke"
    appends, reads, listings = SIZES[size]
    loop = asyncio.new_event_loop()
    try:
        _Bench(target, loop, report).run(appends, reads, listings)
    finally:
        loop.close()


class _Bench:
    def __init__(self, target: Target, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        from google.adk.sessions.database_session_service import DatabaseSessionService
        from google.adk.sessions.sqlite_session_service import SqliteSessionService

        from starpod_session.integrations.adk import StarpodSessionService

        self.target, self.loop, self.report = target, loop, report
        self.ours_url = target.fresh("adk_ours")
        self.manager = SessionManager(self.ours_url)
        self.stores: dict[str, Any] = {"ours": StarpodSessionService(self.manager)}
        if target.backend == "sqlite":
            self.stores["SqliteSessionService"] = SqliteSessionService(str(target.workdir / "adk_sqlite.db"))
        # ADK's SQLAlchemy store needs greenlet and an async driver (aiomysql on MariaDB): the adk-bench extra.
        needs = ["greenlet", {"sqlite": "aiosqlite", "postgresql": "psycopg"}.get(target.backend, "aiomysql")]
        missing = [module for module in needs if importlib.util.find_spec(module) is None]
        if missing:
            print(
                f"(adk: DatabaseSessionService left out: no {', '.join(missing)}; pip install -e '.[adk-bench]')",
                flush=True,
            )
        elif target.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{target.workdir / 'adk_database.db'}"
            self.stores["DatabaseSessionService"] = DatabaseSessionService(url)
        else:
            self.stores["DatabaseSessionService"] = DatabaseSessionService(_async_url(target.fresh("adk_database")))

    def await_(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def run(self, appends: int, reads: tuple[int, int, int], listings: tuple[tuple[int, int], ...]) -> None:
        try:
            self.appends(appends)
            self.reads(*reads)
            for sessions, calls in listings:
                self.listing(sessions, calls)
        finally:
            for store in self.stores.values():
                self.await_(store.close())
            self.manager.close()

    # -- the workloads ------------------------------------------------------------------

    def appends(self, count: int) -> None:
        sessions = {
            name: self.await_(store.create_session(app_name=APP, user_id=USER, session_id="appends"))
            for name, store in self.stores.items()
        }
        # The events are the caller's (its agent made them): each store gets its own, made before timing
        # (building one costs ~85 us, a sixth of our append, the same for every store).
        # interleaved() appends calls count, count+1, ... first (the warm-up), then 0, 1, ...: the warm-up gets
        # the events made first, so that every store's session time only moves forward, as an agent's does.
        events = {name: [_event(n) for n in range(count + _WARMUP)] for name in self.stores}
        sides = [
            (
                lambda n, s=store, session=sessions[name], made=events[name]: self.await_(
                    s.append_event(session, made[(n + _WARMUP) % (count + _WARMUP)])
                )
            )
            for name, store in self.stores.items()
        ]
        bound = _DurableBound(self.target) if self.target.backend != "sqlite" else None
        if bound is not None:
            # Beside the stores: the bare driver writing each event's JSON as one row and committing it, in the
            # loop's thread, and again from the event loop through a bare hop to a thread (our shape: a sync
            # driver under an async adapter), each on events of its own.
            texts = [event.model_dump_json() for event in events["ours"]]

            def bare_append(n: int) -> None:
                bound.append(texts[(n + _WARMUP) % (count + _WARMUP)])

            hopped = bare_thread_hop(bare_append)
            sides.append(bare_append)
            sides.append(lambda n: self.await_(hopped(n)))
        try:
            timings = interleaved(count, *sides, warmup=_WARMUP)
        finally:
            if bound is not None:
                bound.close()
        if bound is not None:
            self.report_bound(timings[:-2], *timings[-2:])
            timings = timings[:-2]
        self.compare_stores(f"append {count:,} events one by one", timings, {"Database": 10.0, "Sqlite": 3.0})

    def report_bound(self, timings: list[Timing], bound: Timing, hopped: Timing) -> None:
        """How much faster than each ADK store any store can append that commits each event (as they and we
        do): their time over the bare driver's one row and commit, and over the same through a bare hop off the
        event loop (the least any store of our shape pays), measured in the same run."""
        for (name, _store), timing in zip(self.stores.items(), timings, strict=True):
            if name == "ours":
                continue
            for line in (
                f"  append bound: the bare driver's one row and commit {bound.median * 1000:.3f} ms: no store "
                f"committing each event can append more than {timing.median / bound.median:.1f}x faster than {name}",
                f"  append bound: the same through a bare thread hop {hopped.median * 1000:.3f} ms: no store "
                f"committing each event from a thread can append more than {timing.median / hopped.median:.1f}x "
                f"faster than {name}",
            ):
                print(line, flush=True)
                self.report.lines.append(line)

    def reads(self, count: int, whole_calls: int, recent_calls: int) -> None:
        from google.adk.sessions.base_session_service import GetSessionConfig

        for store in self.stores.values():
            session = self.await_(store.create_session(app_name=APP, user_id=USER, session_id="long"))
            for n in range(count):
                self.await_(store.append_event(session, _event(n)))
        stored = self.stored_events("long")
        assert len(stored) == count
        for label, config, floor_events, calls in (
            (f"get_session, {count:,} events", None, stored, whole_calls),
            (f"get_session, last 50 of {count:,}", GetSessionConfig(num_recent_events=50), stored[-50:], recent_calls),
        ):
            sides = [
                (
                    lambda _n, s=store, c=config: self.await_(
                        s.get_session(app_name=APP, user_id=USER, session_id="long", config=c)
                    )
                )
                for store in self.stores.values()
            ]
            got = sides[0](0)
            assert [e.id for e in got.events] == [json.loads(data)["id"] for data in floor_events]
            with frozen_heap():
                timings = interleaved(
                    calls, *sides, lambda _n, e=floor_events: _floor_session(e), blocks=min(calls, 10)
                )
            self.compare_stores(label, timings[:-1], {"Database": 1.0, "Sqlite": 1.0}, floor=timings[-1])

    def listing(self, count: int, calls: int) -> None:
        user = f"lister-{count}"
        for store in self.stores.values():
            for n in range(count):
                self.await_(store.create_session(app_name=APP, user_id=user, session_id=f"s{n}", state={"n": n}))
        rows = self.stored_sessions(user)
        assert len(rows) == count
        sides = [
            (lambda _n, s=store: self.await_(s.list_sessions(app_name=APP, user_id=user)))
            for store in self.stores.values()
        ]
        with frozen_heap():
            timings = interleaved(calls, *sides, lambda _n: _floor_listing(rows, user), blocks=min(calls, 10))
        self.compare_stores(
            f"list_sessions of {count:,}", timings[:-1], {"Database": 1.0, "Sqlite": 1.0}, floor=timings[-1]
        )

    # -- reading our tables for the floor -------------------------------------------------

    def stored_events(self, adk_id: str) -> list[str]:
        from starpod_session.adk_store import AdkStore

        session = AdkStore(self.manager).get_session(APP, USER, adk_id)
        assert session is not None
        return session.events

    def stored_sessions(self, user: str) -> list[tuple[str, str, float]]:
        from starpod_session.adk_store import AdkStore

        return [
            (adk_id, json.dumps(state), at)
            for adk_id, _user, state, at in AdkStore(self.manager).list_sessions(APP, user)
        ]

    # -- the report ------------------------------------------------------------------------

    def compare_stores(
        self, workload: str, timings: list[Timing], faster: dict[str, float], floor: Timing | None = None
    ) -> None:
        """Ours against each ADK store (ours at least ``faster[...]`` times faster), and against the floor."""
        ours, *theirs = timings
        for (name, _store), timing in zip(list(self.stores.items())[1:], theirs, strict=True):
            times = ours.median and timing.median / ours.median
            needed = faster["Database" if name.startswith("Database") else "Sqlite"]
            line = f"  {workload}: {name} {timing.median * 1000:.3f} ms, ours {ours.median * 1000:.3f} ms"
            print(f"{line}: ours {times:.1f}x faster (target {needed:g}x)", flush=True)
            self.report.lines.append(line)
            comparison = f"faster than {name}" if needed == 1.0 else f"at least {needed:g}x faster than {name}"
            passed = times >= needed if needed > 1.0 else times > 1.0
            self.report.check(f"adk {workload}: ours {times:.1f}x {comparison}", passed)
        if floor is not None:
            self.report.compare(f"adk {workload}", ours, floor, limit=1.5)


class _DurableBound:
    """The least a durable append costs: the bare driver (``floors``) inserting one event's JSON into a table
    of ``adk_events``' shape and committing it; no store that commits each event can take less."""

    def __init__(self, target: Target) -> None:
        self.floor = target.floor(target.fresh("adk_bound"))
        text = "TEXT" if target.backend == "postgresql" else "LONGTEXT"
        with self.floor.write() as cur:
            cur.execute(
                f"CREATE TABLE bound_events (session_id VARCHAR(128) NOT NULL, id VARCHAR(128) NOT NULL, "
                f"timestamp DOUBLE PRECISION NOT NULL, event_data {text} NOT NULL, PRIMARY KEY (session_id, id))"
            )
        self.insert = self.floor.sql(
            "INSERT INTO bound_events (session_id, id, timestamp, event_data) VALUES (?, ?, ?, ?)"
        )
        self.made = 0

    def append(self, event_data: str) -> None:
        self.made += 1
        with self.floor.write() as cur:
            cur.execute(self.insert, ("bound", f"event-{self.made}", float(self.made), event_data))

    def close(self) -> None:
        self.floor.close()


def _async_url(url: URL) -> str:
    driver = {"postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql", "mariadb": "mysql+aiomysql"}
    return url.set(drivername=driver[url.get_backend_name()]).render_as_string(hide_password=False)


def _event(n: int) -> Any:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    author = "user" if n % 2 == 0 else "agent"
    text = f"message {n}: " + "the quick brown fox jumps over the lazy dog " * 2
    usage = (
        None
        if author == "user"
        else types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1000 + n, cached_content_token_count=200, candidates_token_count=50
        )
    )
    return Event(
        author=author,
        invocation_id=f"inv-{n // 2}",
        content=types.Content(role="user" if author == "user" else "model", parts=[types.Part(text=text)]),
        usage_metadata=usage,
        model_version=None if usage is None else "gemini-2.5-flash",
        actions=EventActions(state_delta={"turn": n} if n % 5 == 0 else {}),
    )


def _floor_session(stored: list[str]) -> Any:
    from google.adk.events.event import Event
    from google.adk.sessions.session import Session

    events = [Event.model_validate_json(data) for data in stored]
    return Session(id="long", app_name=APP, user_id=USER, state={}, events=events, last_update_time=0.0)


def _floor_listing(rows: list[tuple[str, str, float]], user: str) -> list[Any]:
    from google.adk.sessions.session import Session

    return [
        Session(id=adk_id, app_name=APP, user_id=user, state=json.loads(state), events=[], last_update_time=at)
        for adk_id, state, at in rows
    ]
