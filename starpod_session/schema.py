"""Bringing a database to the schema this release expects (Alembic, shipped with the package)."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from .engine import READ_ONLY
from .errors import SchemaOutdated, SchemaTooNew, StarpodSessionError

__all__ = [
    "BASELINE_REVISION",
    "migrations_dir",
    "alembic_config",
    "head_revision",
    "current_revision",
    "ensure_schema",
    "upgrade_schema",
]

#: The revision that equals the Rust crate's own schema.
BASELINE_REVISION = "0001"

#: Alembic's command API keeps global state: one migration at a time per process.
_ALEMBIC_LOCK = threading.RLock()

_RUST_SESSION_COLUMNS = frozenset(
    {
        "id", "created_at", "last_message_at", "is_closed", "summary", "message_count",
        "channel", "channel_session_key", "title", "user_id", "is_read", "triggered_by",
    }
)  # fmt: skip
_MARIADB_LOCK_NAME = "starpod_session.migrate"
_POSTGRES_LOCK_ID = 0x5374_6172_706F_64  # "Starpod", any constant shared by all processes


def migrations_dir() -> Path:
    """The migration scripts: inside the installed wheel, or the checkout's ``migrations/``."""
    packaged = Path(__file__).with_name("_migrations")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for our scripts, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this release knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is stamped at, or ``None``."""
    return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(engine: Engine, *, auto_upgrade: bool, target: str) -> None:
    """Make sure the database is at head: upgrade it, or explain what to run.

    Raises :class:`SchemaTooNew` when the database is stamped with a revision this
    release does not know, and :class:`SchemaOutdated` (naming the command) when it
    is behind and ``auto_upgrade`` is off. Nothing is written in either case.
    """
    head = head_revision()
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        current = current_revision(connection)
    if current == head:
        return
    if current is not None and not _is_known(current):
        raise SchemaTooNew(
            f"the database at {target} is at schema revision {current!r}, which this release of "
            "starpod-session does not know: it was migrated by a newer release. Upgrade the package "
            "(pip install --upgrade starpod-session)."
        )
    if not auto_upgrade:
        raise SchemaOutdated(
            f"the database at {target} is at schema revision {current or 'none'}, this release needs "
            f"{head}. Run: starpod-session db upgrade {target}"
        )
    upgrade_schema(engine)


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``, serialised across threads and processes.

    Rust-era files (a ``_sqlx_migrations`` table, our tables, no Alembic stamp) are
    first stamped at the baseline, which is their schema, so no row is touched.
    """
    with _ALEMBIC_LOCK, engine.begin() as connection:
        _lock_against_other_processes(connection)
        try:
            if current_revision(connection) is None and _is_rust_era(connection):
                command.stamp(alembic_config(connection), BASELINE_REVISION)
            command.upgrade(alembic_config(connection), revision)
        finally:
            _unlock(connection)


def _is_known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _is_rust_era(connection: Connection) -> bool:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if "_sqlx_migrations" not in tables or "session_metadata" not in tables:
        return False
    columns = {column["name"] for column in inspector.get_columns("session_metadata")}
    missing = _RUST_SESSION_COLUMNS - columns
    if missing:
        raise StarpodSessionError(
            "this database was written by an older starpod-session (Rust) release whose schema "
            f"lacks {', '.join(sorted(missing))}; open it once with the current Starpod first"
        )
    return True


def _lock_against_other_processes(connection: Connection) -> None:
    # SQLite: the transaction began with BEGIN IMMEDIATE, which already excludes
    # every other writer until it commits.
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _POSTGRES_LOCK_ID})
    elif dialect in ("mysql", "mariadb"):
        # MariaDB commits implicitly around DDL, so a transaction cannot hold the
        # lock; a named lock lives as long as the connection.
        connection.execute(text("SELECT GET_LOCK(:name, 600)"), {"name": _MARIADB_LOCK_NAME})


def _unlock(connection: Connection) -> None:
    if connection.dialect.name in ("mysql", "mariadb"):
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MARIADB_LOCK_NAME})
