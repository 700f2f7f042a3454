"""The ``starpod-session`` command (also ``python -m starpod_session``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .demo import run_demo
from .errors import StarpodSessionError


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(prog="starpod-session", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="walk through the API on a temporary SQLite file")
    demo.add_argument("--db", type=Path, help="use (and keep) this SQLite file instead of a temporary one")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            run_demo(args.db)
    except StarpodSessionError as error:
        print(f"starpod-session: {error}", file=sys.stderr)
        return 1
    return 0
