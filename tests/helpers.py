"""Helpers shared by the test modules: raw database access beside the library, and the checks several files make.

Fixtures live in ``conftest.py``; running the command line in ``cli/run.py``; which
backends run and their scratch databases in ``backends.py``. A helper used by more
than one test module belongs here, never imported from another ``test_*`` module.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from freezegun import freeze_time

from starpod_session import Channel, Continue, New, SessionManager, UsageRecord
from starpod_session.backends.engine import create_storage_engine, to_url
from starpod_session.storage.models import Base
from starpod_session.storage.schema import alembic_config

# -- the database beside the library ---------------------------------------------------------------


@contextmanager
def raw_engine(target: object, **options: object) -> Iterator[sa.Engine]:
    """An engine of the test's own on ``target`` (a path or URL), disposed when the block ends.

    ``options`` go to ``create_storage_engine`` (as ``SessionManager`` passes its own)."""
    engine = create_storage_engine(to_url(target), **options)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def raw_connection(target: object, *, begin: bool = False) -> Iterator[sa.Connection]:
    """A connection of the test's own on ``target``; with ``begin``, in a transaction committed at the end."""
    with raw_engine(target) as engine, engine.begin() if begin else engine.connect() as connection:
        yield connection


#: Every table of the models, parents first.
MODEL_TABLES = tuple(table.name for table in Base.metadata.sorted_tables)


def row_counts(engine: sa.Engine, tables: Iterable[str] = MODEL_TABLES) -> dict[str, int]:
    """Table name → number of rows, read by name (so it works at any revision)."""
    with engine.connect() as connection:
        return {
            name: connection.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            for name in tables
        }


def record_at(manager: SessionManager, session_id: str, moment: datetime, record: UsageRecord, turn: int = 1) -> None:
    """Record usage with the clock frozen at ``moment``."""
    with freeze_time(moment):
        manager.record_usage(session_id, record, turn=turn)


# -- schema versions ---------------------------------------------------------------------------------


def downgrade_schema(engine: sa.Engine, revision: str) -> None:
    """Alembic's downgrade to ``revision`` in one transaction on ``engine``."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def migration_module(revision: str) -> ModuleType:
    """The module of a migration script (to read its frozen statements and constants)."""
    return ScriptDirectory.from_config(alembic_config()).get_revision(revision).module


def revisions_in_order() -> list[str]:
    """Every revision of the script directory, baseline first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def stamps(target: str) -> list[str]:
    """The rows of ``alembic_version``."""
    with raw_connection(target) as connection:
        return [row[0] for row in connection.execute(sa.text("SELECT version_num FROM alembic_version"))]


def snapshot(target: str) -> object:
    """Everything a test can see in the database: a full SQL dump for SQLite, counts and stamp on servers."""
    url = to_url(target)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(f"file:{url.database}?mode=ro", uri=True) as raw:
            return list(raw.iterdump())
    with raw_connection(url) as connection:
        tables = sorted(sa.inspect(connection).get_table_names())
        counts = {
            t: connection.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one() for t in tables
        }
        stamp = (
            connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            if "alembic_version" in tables
            else None
        )
        return tables, counts, stamp


def command_target(target: str) -> str:
    """How the library names the database in its messages (password hidden)."""
    url = to_url(target)
    return str(url.database) if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)


# -- Rust-era files ------------------------------------------------------------------------------------

#: The Rust crate's database files in ``tests/fixtures`` (copy them with the ``writable_copy`` fixture).
RUST_FILES = ("rust-session-db-2026-03.sqlite", "rust-core-db-0.3.sqlite")


def raw_rows(path: Path, table: str, columns: str = "*") -> list[sqlite3.Row]:
    """A SQLite table's rows in storage order, read-only and beside the library."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as raw:
        raw.row_factory = sqlite3.Row
        return raw.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


# -- channel gaps ---------------------------------------------------------------------------------------

GAP_T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


def assert_gap_is(manager: SessionManager, channel: Channel | str, minutes: int, key: str = "k") -> None:
    """A session of ``channel`` continues one second before ``minutes`` of inactivity and auto-closes at it."""
    with freeze_time(GAP_T0) as clock:
        session_id = manager.create_session(channel, key)
        clock.tick(timedelta(minutes=minutes) - timedelta(seconds=1))
        assert manager.resolve_session(channel, key) == Continue(session_id)
        clock.tick(timedelta(seconds=1))
        assert manager.resolve_session(channel, key) == New(closed_session_id=session_id)
