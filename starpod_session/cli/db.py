"""``starpod-session db ...``: upgrade, inspect and check a database's schema.

Every command takes a SQLite file path or a SQLAlchemy URL, exactly as
``SessionManager`` does, as ``--db`` (or the older positional TARGET).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..backends.engine import READ_ONLY, create_storage_engine
from ..errors import StarpodSessionError, StorageError
from ..storage.schema import (
    current_revision,
    head_revision,
    is_known_revision,
    refuse_unknown_revision,
    schema_drift,
    upgrade_schema,
)
from .options import add_db_option, database_of, print_json, usage_error
from .progress import EXIT_INTERRUPTED, progress_display
from .transfer import add_transfer_commands

__all__ = ["EXIT_BEHIND", "add_db_commands"]

#: Exit status of ``db current`` and ``db check`` for a database behind this release.
EXIT_BEHIND = 3

T = TypeVar("T")

_EPILOG = f"""\
exit status:
  0  success: the database is at this release's head (current, check)
  1  error, schema drift (check), or a database migrated by a newer release
  2  bad command line
  {EXIT_BEHIND}  the database is behind this release or has no schema yet (current, check)

Rust-era SQLite files (with a _sqlx_migrations table) are recognised, stamped at
the baseline revision and upgraded in place; nothing else in them is touched."""


def add_db_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``db`` group (``upgrade``, ``current``, ``check``, ``copy``, ``dump``, ``restore``)."""
    db = subparsers.add_parser(
        "db",
        help="upgrade or inspect a database's schema",
        description="Upgrade or inspect the schema of a database (a SQLite path or a SQLAlchemy URL).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_db_option(db)
    commands = db.add_subparsers(dest="db_command", required=True)
    for name, run, summary in (
        ("upgrade", _run_upgrade, "migrate the database (created if missing) to the head or --revision"),
        ("current", _run_current, f"print the current revision; exit 0 at head, {EXIT_BEHIND} behind"),
        ("check", _run_check, f"exit 0 at head with no drift from the models; 1 on drift, {EXIT_BEHIND} behind"),
    ):
        command = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_db_option(command)
        command.add_argument(
            "target", nargs="?", metavar="TARGET", help="the same as --db (kept for scripts written before --db)"
        )
        if name == "upgrade":
            command.add_argument("--revision", default="head", help="revision to upgrade to (default: head)")
            command.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
        command.set_defaults(run=run, parser=command)
    add_transfer_commands(commands)


def _run_upgrade(args: argparse.Namespace) -> int:
    with _open(args, must_exist=False) as (engine, target):
        before = _stored_revision(engine, target)
        if args.revision != "head" and not is_known_revision(args.revision):
            raise StarpodSessionError(
                f"unknown revision {args.revision!r} (this release knows up to {head_revision()})"
            )
        try:
            with progress_display(not args.json) as progress:
                _database_call(lambda: upgrade_schema(engine, args.revision, target=target, progress=progress), target)
        except KeyboardInterrupt:
            return _interrupted(engine, target)
        after = _database_call(lambda: _read_revision(engine), target)
    if args.json:
        print_json({"database": target, "from": before, "to": after})
    elif before == after:
        print(f"{target}: already at {after}")
    else:
        print(f"{target}: upgraded from {before or 'none'} to {after}")
    return 0


def _interrupted(engine: Engine, target: str) -> int:
    """After Ctrl-C: the migration under way was rolled back; say where the database stands and how to go on."""
    now = _database_call(lambda: _read_revision(engine), target)
    print(
        f"starpod-session: interrupted; the migration under way was rolled back, {target} is at revision "
        f"{now or 'none'}. To continue, run: starpod-session db upgrade --db {target}",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


def _run_current(args: argparse.Namespace) -> int:
    with _open(args, must_exist=True) as (engine, target):
        current = _stored_revision(engine, target)
    head = head_revision()
    if current == head:
        print(f"{current} (head)")
        return 0
    print(f"{current or 'none'} (behind head {head}; run: starpod-session db upgrade --db {target})")
    return EXIT_BEHIND


def _run_check(args: argparse.Namespace) -> int:
    head = head_revision()
    with _open(args, must_exist=True) as (engine, target):
        current = _stored_revision(engine, target)
        if current != head:
            return _fail(
                f"{target} is at revision {current or 'none'}, this release needs {head}. "
                f"Run: starpod-session db upgrade --db {target}",
                EXIT_BEHIND,
            )
        drift = _database_call(lambda: schema_drift(engine), target)
    if drift:
        return _fail(f"the schema of {target} differs from this release's models: {'; '.join(drift)}", 1)
    print(f"{target}: at head {head}, schema matches the models")
    return 0


def _fail(message: str, status: int) -> int:
    print(f"starpod-session: {message}", file=sys.stderr)
    return status


@contextmanager
def _open(args: argparse.Namespace, *, must_exist: bool) -> Iterator[tuple[Engine, str]]:
    given = getattr(args, "db", None)
    if given and args.target and given != args.target:
        usage_error(args, "--db", f"names {given!r}, TARGET names {args.target!r}; give the database once")
    database = database_of(args.target or given, must_exist=must_exist)
    # No statement deadline: a migration may rightly run long (backends/deadlines.py).
    engine = _database_call(lambda: create_storage_engine(database.url, statement_timeout=None), database.shown)
    try:
        yield engine, database.shown
    finally:
        engine.dispose()


def _stored_revision(engine: Engine, target: str) -> str | None:
    current = _database_call(lambda: _read_revision(engine), target)
    refuse_unknown_revision(current, target)
    return current


def _read_revision(engine: Engine) -> str | None:
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        return current_revision(connection)


def _database_call(call: Callable[[], T], target: str) -> T:
    """Run ``call``, turning driver and Alembic errors into our own (no traceback on the command line)."""
    try:
        return call()
    except StarpodSessionError:
        raise
    except CommandError as error:
        raise StarpodSessionError(f"{target}: {error}") from error
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise StorageError(f"{target}: {type(reason).__name__}: {reason}") from error
    except ImportError as error:  # a server URL whose driver is not installed
        raise StorageError(f"{target}: {error}") from error
