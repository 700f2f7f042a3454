"""The ``starpod-session`` command (also ``python -m starpod_session``).

Each group of subcommands lives in its own module and registers itself here:
it adds its parsers and sets ``run`` (a function of the parsed arguments that
returns the exit status) with ``set_defaults``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_costs import add_costs_command
from .cli_db import add_db_commands
from .cli_lifecycle import add_lifecycle_commands
from .cli_search import add_search_command
from .cli_sessions import add_sessions_commands
from .demo import run_demo
from .errors import StarpodSessionError


def _run_demo(args: argparse.Namespace) -> int:
    run_demo(args.db)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(prog="starpod-session", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="walk through the API on a temporary SQLite file")
    demo.add_argument("--db", type=Path, help="use (and keep) this SQLite file instead of a temporary one")
    demo.set_defaults(run=_run_demo)
    add_db_commands(commands)
    add_sessions_commands(commands)
    add_costs_command(commands)
    add_search_command(commands)
    add_lifecycle_commands(commands)  # after add_sessions_commands: it adds `sessions delete`
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except StarpodSessionError as error:
        print(f"starpod-session: {error}", file=sys.stderr)
        return 1
