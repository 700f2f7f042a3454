"""Each revision creates today what it created when it was written: its schema against a recorded snapshot.

A revision must not change once released: a database migrated last year and one
migrated today must end up alike. Revisions carry frozen copies of the column
types they need instead of importing the library's live ones; this test proves
it by upgrading an empty database one revision at a time and comparing the
schema after each step with ``tests/fixtures/schema_snapshots/<backend>.json``.

A new revision has no snapshot yet and fails here with the command that records
it (``STARPOD_SESSION_RECORD_SCHEMA=1 python -m pytest tests/schema/test_migration_snapshots.py``,
with the servers named as for the rest of the suite); a changed revision fails
with the difference. Recording never overwrites a revision already recorded.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SAWarning

from starpod_session.storage.schema import upgrade_schema

from ..helpers import raw_engine, revisions_in_order

SNAPSHOTS = Path(__file__).resolve().parents[1] / "fixtures" / "schema_snapshots"
RECORD_VARIABLE = "STARPOD_SESSION_RECORD_SCHEMA"


#: A column default as SQLAlchemy writes it into SQLite's DDL: ``DEFAULT 0`` or ``DEFAULT (0)``,
#: depending on its version (2.0.30 and 2.1 differ); the two are the same default.
_PARENTHESISED_DEFAULT = re.compile(r"DEFAULT \(([^()]*)\)")


def comparable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with SQLite's defaults written one way, so SQLAlchemy's version does not show."""
    return json.loads(_PARENTHESISED_DEFAULT.sub(r"DEFAULT \1", json.dumps(schema)))


def schema_of(connection: sa.Connection) -> dict[str, Any]:
    """The schema as the database reports it: SQLite's own DDL text; the servers' catalogue, reflected."""
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        )
        return {f"{kind} {name}": {"table": table, "sql": sql} for kind, name, table, sql in rows}
    inspector = sa.inspect(connection)
    schema: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        for table in sorted(inspector.get_table_names()):
            schema[table] = {
                "columns": [
                    {
                        "name": column["name"],
                        "type": str(column["type"]),
                        "nullable": column["nullable"],
                        "default": None if column.get("default") is None else str(column["default"]),
                        "computed": None if "computed" not in column else str(column["computed"]["sqltext"]),
                    }
                    for column in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted(
                    (fk["name"], fk["constrained_columns"], fk["referred_table"], fk.get("options", {}).get("ondelete"))
                    for fk in inspector.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (index["name"], [str(c) for c in index["column_names"]], bool(index["unique"]))
                    for index in inspector.get_indexes(table)
                ),
            }
    return json.loads(json.dumps(schema))  # tuples as lists, as the recorded file holds them


def test_each_revision_creates_the_schema_it_was_recorded_with(backend, empty_db_target):
    snapshot_file = SNAPSHOTS / f"{backend}.json"
    recorded = json.loads(snapshot_file.read_text()) if snapshot_file.exists() else {}
    recording = os.environ.get(RECORD_VARIABLE) == "1"
    with raw_engine(empty_db_target) as engine:
        for revision in revisions_in_order():
            upgrade_schema(engine, revision)
            with engine.connect() as connection:
                schema = schema_of(connection)
            if revision not in recorded:
                assert recording, (
                    f"revision {revision} has no recorded schema for {backend}: record it with "
                    f"{RECORD_VARIABLE}=1 python -m pytest tests/schema/test_migration_snapshots.py"
                )
                recorded[revision] = schema
                continue
            assert comparable(schema) == comparable(recorded[revision]), (
                f"revision {revision} now creates another schema on {backend}"
            )
    if recording:
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        snapshot_file.write_text(json.dumps(recorded, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def test_no_revision_imports_the_library():
    """A revision that imported the library's live types or code would change when they change."""
    import ast

    versions = Path(__file__).resolve().parents[2] / "migrations" / "versions"
    importing = []
    for revision in sorted(versions.glob("*.py")):
        for node in ast.walk(ast.parse(revision.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            importing += [f"{revision.name}: {name}" for name in names if name.split(".")[0] == "starpod_session"]
    assert importing == []
