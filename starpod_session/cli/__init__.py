"""The starpod-session command (also python -m starpod_session).

Each group of subcommands lives in its own module and registers itself here:
it adds its parsers and sets ``run`` (a function of the parsed arguments that
returns the exit status) and ``parser`` (for reporting a bad value) with
``set_defaults``. ``main`` turns every failure into one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from .._common.urls import redact_text
from .._version import __version__
from ..demo import run_demo
from ..errors import InvalidInput, StarpodSessionError
from .costs import add_costs_command
from .db import add_db_commands
from .export import add_export_command
from .lifecycle import add_lifecycle_commands
from .options import add_db_option, usage_error
from .search import add_search_command
from .sessions import add_sessions_commands

__all__ = ["build_parser", "main"]

#: Exit status when the reader of stdout went away (as for a command killed by SIGPIPE).
EXIT_BROKEN_PIPE = 141


def _run_demo(args: argparse.Namespace) -> int:
    # Only an explicit --db: the demo writes, and $STARPOD_SESSION_DB names the operator's database.
    run_demo(Path(args.db) if args.db else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(
        prog="starpod-session",
        description="Inspect an AI agent's sessions and costs, and upgrade the database's schema.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_db_option(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="walk through the API on a temporary SQLite file",
        description="Walk through the API on a temporary SQLite file.",
    )
    demo.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="use (and keep) this SQLite file instead of a temporary one",
    )
    demo.set_defaults(run=_run_demo, parser=demo)
    add_db_commands(commands)
    add_sessions_commands(commands)
    add_costs_command(commands)
    add_search_command(commands)
    add_lifecycle_commands(commands)  # after add_sessions_commands: it adds `sessions delete`
    add_export_command(commands)  # and `sessions export`
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a bad command line)."""
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except SystemExit as exit:  # argparse: --help, or a bad command line
        return exit.code if isinstance(exit.code, int) else 1
    except BrokenPipeError:
        return _reader_gone()


def _run(args: argparse.Namespace) -> int:
    try:
        status: int = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        raise
    except InvalidInput as error:  # a value the library rejected: which flag gave it, if any?
        flag = {"lock_timeout": "--lock-timeout", **getattr(args, "flags", {})}.get(error.field)
        if flag is not None:
            usage_error(args, flag, error.reason)
        return _fail(error)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # never a traceback: the driver's or Alembic's words, on one line
        return _fail(error)


def _fail(error: Exception) -> int:
    if isinstance(error, StarpodSessionError):
        message = str(error)
    else:
        orig = getattr(error, "orig", None) if isinstance(error, SQLAlchemyError) else None
        reason = orig if orig else error
        message = f"{type(reason).__name__}: {reason}"
    print(f"starpod-session: {redact_text(' '.join(message.split()))}", file=sys.stderr)
    return 1


def _reader_gone() -> int:
    """Stop writing to a pipe nobody reads: what is still buffered goes nowhere, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (e.g. captured in-process)
        pass
    return EXIT_BROKEN_PIPE
