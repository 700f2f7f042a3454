"""``sessions export --all DIR``: the Markdown transcript of every closed session, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._common.validation import MAX_COUNT
from ..manager import SessionManager
from .options import add_common_options, database_of, print_json
from .progress import EXIT_INTERRUPTED, counter_display

__all__ = ["add_export_command"]

#: Exit status after Ctrl-C.


def add_export_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sessions export`` on the existing ``sessions`` group."""
    sessions_group = subparsers.choices["sessions"]
    [sessions] = [a for a in sessions_group._actions if isinstance(a, argparse._SubParsersAction)]
    export = sessions.add_parser(
        "export",
        help="write the Markdown transcript of every closed session to a folder",
        description="Write the Markdown transcript of every closed session (archived ones too) to DIR, "
        "one file per session; a file whose content is unchanged is not rewritten, so running it again "
        "after an interruption only writes what is missing.",
    )
    add_common_options(export)
    export.add_argument("--all", action="store_true", required=True, help="every closed session")
    export.add_argument("folder", metavar="DIR", type=Path)
    export.set_defaults(run=_run_export, parser=export)


def _run_export(args: argparse.Namespace) -> int:
    database = database_of(args.db, must_exist=True)
    options = {} if args.lock_timeout is None else {"lock_timeout": args.lock_timeout}
    with SessionManager(database, args.folder, config=args.config, auto_upgrade=False, **options) as manager:
        closed = manager.list_sessions(MAX_COUNT, is_closed=True, archived=None)
        written: list[str] = []
        try:
            with counter_display(not args.json, "export", len(closed), "transcripts") as progress:
                for number, meta in enumerate(closed, start=1):
                    written.append(str(manager.export_transcript(meta.id)))
                    if progress is not None:
                        progress(number)
        except KeyboardInterrupt:
            print(
                f"starpod-session: interrupted; {len(written)} of {len(closed)} transcripts written to "
                f"{args.folder}. Run the same command again to write the rest.",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    if args.json:
        print_json({"folder": str(args.folder), "transcripts": written})
    else:
        print(f"{len(written)} transcript(s) written to {args.folder}")
    return 0
