"""What the commands share: the ``--db``/``--config``/``--json`` options, the one way a database
is named and opened (never created, never migrated, by the operator commands), command-line
values checked as they are parsed, URLs with their passwords hidden, and JSON output."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, NoReturn

import attrs
from rich.console import Console

from ..backends import backend_of_url
from ..backends.engine import Database, to_database
from ..errors import StarpodSessionError
from ..manager import SessionManager

__all__ = [
    "DB_VARIABLE",
    "add_common_options",
    "add_db_option",
    "console",
    "count",
    "database_of",
    "jsonable",
    "open_manager",
    "print_json",
    "usage_error",
]

#: The environment variable naming the database when ``--db`` is not given (as ``alembic.ini`` reads it).
DB_VARIABLE = "STARPOD_SESSION_DB"

#: Decimal places kept of money values in JSON: far below a cent, above float noise.
MONEY_PLACES = 10


def database_of(target: str | None, *, must_exist: bool) -> Database:
    """The database ``target`` (a path or URL, or ``$STARPOD_SESSION_DB`` when ``None``) names.

    Parsed, checked and given its shown form (password hidden) here, once: what the
    command opens takes the :class:`Database` as it is. With ``must_exist``, a SQLite
    file that is not there is an error rather than a new file.
    """
    target = target or os.environ.get(DB_VARIABLE)
    if not target:
        raise StarpodSessionError(f"say which database: --db PATH_OR_URL, or set {DB_VARIABLE}")
    database = to_database(target)
    file = backend_of_url(database.url).local_file(database.url)
    if file is None:
        return database
    if file in ("", ":memory:"):
        raise StarpodSessionError(f"{target} names no database file; give a file path")
    if must_exist and not os.path.isfile(database.shown):
        raise StarpodSessionError(f"no database file at {database.shown}")
    return database


def add_db_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Add ``--db``; given on a subcommand, it does not overwrite one given before the subcommand."""
    parser.add_argument(
        "--db",
        default=None if top_level else argparse.SUPPRESS,
        metavar="PATH_OR_URL",
        help=f"SQLite file path or SQLAlchemy URL (default: ${DB_VARIABLE})",
    )


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--db``, ``--config`` and ``--json`` to an operator command."""
    add_db_option(parser)
    parser.add_argument(
        "--config",
        metavar="AGENT_TOML",
        help="agent.toml, for channels it defines (such as --channel slack)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for a database another program holds locked (default: 30)",
    )


def usage_error(args: argparse.Namespace, flag: str, message: str) -> NoReturn:
    """Report a bad command-line value as argparse does (usage, message, exit status 2)."""
    args.parser.error(f"argument {flag}: {message}")
    raise AssertionError("argparse's error() exits")  # pragma: no cover


def count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return value


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError  # rich would exit with status 1; main() ends quietly as for print()


def console() -> Console:
    """Where tables go: stdout, as wide as the terminal (or ``$COLUMNS``)."""
    return _Console()


@contextmanager
def open_manager(args: argparse.Namespace) -> Iterator[SessionManager]:
    """A manager on the database the command names; it must exist and be at this release's schema."""
    database = database_of(args.db, must_exist=True)
    options = {} if args.lock_timeout is None else {"lock_timeout": args.lock_timeout}
    manager = SessionManager(database, config=args.config, auto_upgrade=False, **options)
    try:
        yield manager
    finally:
        manager.close()


def _plain(_instance: object, _field: object, value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):  # every float of the records is money
        return round(value, MONEY_PLACES)
    return value


def jsonable(record: Any) -> Any:
    """An attrs record (or a list of them) as JSON-ready dicts; times in ISO 8601, money rounded."""
    if isinstance(record, (list, tuple)):
        return [jsonable(item) for item in record]
    return attrs.asdict(record, value_serializer=_plain)


def print_json(document: object) -> None:
    """Print ``document`` as indented JSON on stdout."""
    print(json.dumps(document, indent=2, ensure_ascii=False))
