"""Fixtures of the transfer tests: databases of every backend to copy from and to, filled alike."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from freezegun import freeze_time

from starpod_session import Channel, SessionManager, UsageRecord
from starpod_session.storage.models import Base

from ..backends import configured_server_urls
from ..conftest import running_backends

#: A moment with microseconds, so a copy that rounds or cuts them fails.
T0 = datetime(2026, 3, 20, 12, 0, 0, 123457, tzinfo=timezone.utc)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``source`` and ``target``: every pair of running backends (both SQLite included)."""
    running = running_backends(metafunc.config)
    if "source" in metafunc.fixturenames and "target" in metafunc.fixturenames:
        pairs = [(a, b) for a in running for b in running]
        metafunc.parametrize(("source", "target"), pairs, ids=[f"{a}-{b}" for a, b in pairs])
    elif "target" in metafunc.fixturenames:
        metafunc.parametrize("target", running)
    elif "source" in metafunc.fixturenames:
        metafunc.parametrize("source", running)


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """``fresh_database(backend, name)``: the URL (or path) of a new empty database, dropped at teardown.

    On a server: a database of its own beside the configured one (``test`` → ``test_h30x<pid>_<name>``).
    """
    created: list[tuple[sa.Engine, str]] = []

    def fresh(backend: str, name: str) -> str:
        if backend == "sqlite":
            return str(tmp_path / f"{name}.db")
        configured = configured_server_urls()[backend]
        admin = sa.create_engine(configured, isolation_level="AUTOCOMMIT")
        database = f"{configured.database}_xfer{os.getpid()}_{name}"
        quoted = admin.dialect.identifier_preparer.quote_identifier(database)
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}"))
            connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
        created.append((admin, quoted))
        return configured.set(database=database).render_as_string(hide_password=False)

    yield fresh
    for admin, quoted in created:
        force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
        admin.dispose()


def fill(target: str, *, sessions: int = 4, messages: int = 6) -> None:
    """Sessions of several channels and users with messages, tool calls, usage, compactions, titles,
    an archived one, unread ones, and deleted rows (so the id counters are past the largest ids)."""
    with freeze_time(T0) as clock, SessionManager(target) as manager:
        for number in range(sessions):
            channel = Channel.MAIN if number % 2 else Channel.TELEGRAM
            session = manager.create_session(channel, f"key-{number}", user_id=f"user-{number % 3}")
            for turn in range(messages):
                clock.tick(timedelta(seconds=1, microseconds=1))
                manager.save_message(session, "user", f"hello world number {number} turn {turn} ünïcode 👍")
            manager.save_message(session, "tool_use", '{"type":"tool_use","id":"c1","name":"grep","input":{}}')
            manager.save_message(
                session, "tool_result", '{"type":"tool_result","tool_use_id":"c1","is_error":true,"content":"x"}'
            )
            manager.record_usage(
                session,
                UsageRecord(input_tokens=10 + number, output_tokens=2**40, cost_usd=0.1 + number / 3, model="m"),
                turn=1,
            )
            manager.record_usage(session, UsageRecord(input_tokens=1, output_tokens=2, cost_usd=1 / 7), turn=2)
            manager.record_compaction(session, "auto", 1000, f"summary {number}", 3)
            manager.set_title_if_empty(session, f"Title {number}")
            if number % 2:
                manager.close_session(session, f"closed {number}")
        doomed = manager.create_session(Channel.MAIN, "doomed")
        manager.save_message(doomed, "user", "to be deleted")
        manager.record_compaction(doomed, "auto", 1, "gone", 1)
        manager.close_session(doomed, "bye")
        manager.delete_session(doomed)
        manager.archive_session(session)


def typed_rows(target: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the models, as the models' types read them, sorted."""
    from starpod_session.backends.engine import create_storage_engine, to_url

    engine = create_storage_engine(to_url(target))
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted(
                    (tuple(row) for row in connection.execute(sa.select(table))), key=lambda row: repr(row)
                )
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def fills_up_after(monkeypatch: pytest.MonkeyPatch, dst: str, pages: int = 20) -> None:
    """Create ``dst`` (at head, empty) and let a transfer write only ``pages`` more pages into it: the
    disk filling up, simulated with SQLite's page limit (``max_page_count``); ``monkeypatch.undo()`` frees it."""
    from starpod_session.features import transfer

    SessionManager(dst).close()
    used = sqlite3.connect(dst).execute("PRAGMA page_count").fetchone()[0]
    real_engine = transfer.create_storage_engine

    def limited(url: object, **options: Any) -> Any:
        engine = real_engine(url, **options)
        sa.event.listen(engine, "connect", lambda c, _r: c.execute(f"PRAGMA max_page_count = {used + pages}"))
        return engine

    monkeypatch.setattr(transfer, "create_storage_engine", limited)
