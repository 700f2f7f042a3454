"""What the operator commands share: the ``--db``/``--config``/``--json`` options, opening the
database read-only in spirit (never created, never migrated), and JSON output."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import attrs

from ..engine import to_url
from ..errors import StarpodSessionError
from ..manager import SessionManager

__all__ = ["DB_VARIABLE", "add_common_options", "open_manager", "print_json"]

#: The environment variable naming the database when ``--db`` is not given (as ``alembic.ini`` reads it).
DB_VARIABLE = "STARPOD_SESSION_DB"


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--db``, ``--config`` and ``--json`` to an operator command."""
    parser.add_argument(
        "--db",
        default=os.environ.get(DB_VARIABLE),
        metavar="PATH_OR_URL",
        help=f"SQLite file path or SQLAlchemy URL (default: ${DB_VARIABLE})",
    )
    parser.add_argument(
        "--config",
        metavar="AGENT_TOML",
        help="agent.toml, for channels it defines (such as --channel slack)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")


@contextmanager
def open_manager(args: argparse.Namespace) -> Iterator[SessionManager]:
    """A manager on the database the command names; it must exist and be at this release's schema."""
    if not args.db:
        raise StarpodSessionError(f"say which database: --db PATH_OR_URL, or set {DB_VARIABLE}")
    url = to_url(args.db)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        raise StarpodSessionError(f"no database file at {url.database}")
    manager = SessionManager(url, config=args.config, auto_upgrade=False)
    try:
        yield manager
    finally:
        manager.close()


def _plain(_instance: object, _field: object, value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def jsonable(record: object) -> object:
    """An attrs record (or a list of them) as JSON-ready dicts; times in ISO 8601."""
    if isinstance(record, (list, tuple)):
        return [jsonable(item) for item in record]
    return attrs.asdict(record, value_serializer=_plain)


def print_json(document: object) -> None:
    """Print ``document`` as indented JSON on stdout."""
    print(json.dumps(document, indent=2, ensure_ascii=False))
