"""The Alembic baseline creates exactly the models' schema, on every backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from starpod_session import SessionManager
from starpod_session.engine import create_storage_engine, to_url
from starpod_session.models import Base
from starpod_session.schema import alembic_config, current_revision, head_revision, upgrade_schema

ROOT = Path(__file__).resolve().parents[1]
OUR_TABLES = {"session_metadata", "session_messages", "usage_stats", "compaction_log", "alembic_version"}


def schema_differences(target: str) -> list:
    engine = create_storage_engine(to_url(target))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_of_an_empty_database_matches_the_models(empty_db_target):
    engine = create_storage_engine(to_url(empty_db_target))
    try:
        upgrade_schema(engine)
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            assert set(inspect(connection).get_table_names()) == OUR_TABLES
    finally:
        engine.dispose()
    assert schema_differences(empty_db_target) == []


def test_opening_a_new_database_brings_it_to_head(empty_db_target, tmp_path):
    with SessionManager(empty_db_target, tmp_path / "sessions") as manager:
        manager.create_session("main", "k")
    engine = create_storage_engine(to_url(empty_db_target))
    try:
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
    finally:
        engine.dispose()
    assert schema_differences(empty_db_target) == []


def test_there_is_a_single_head():
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def test_alembic_command_line_upgrades_an_empty_file(tmp_path):
    db = tmp_path / "nested" / "cli.db"
    for arguments in (["upgrade", "head"], ["check"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"db={db}", *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr
    assert schema_differences(str(db)) == []
