"""``starpod-session db copy | dump | restore``: move a whole database, with a progress bar on a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..features.transfer import DEFAULT_BATCH, TransferReport, copy_database, dump_database, restore_database
from .options import add_db_option, count, database_of, jsonable, print_json
from .progress import EXIT_INTERRUPTED, progress_display

__all__ = ["add_transfer_commands"]

#: Exit status after Ctrl-C (as a shell reports a command killed by SIGINT).


def add_transfer_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``db copy``, ``db dump`` and ``db restore``."""
    copy = commands.add_parser(
        "copy",
        help="copy every row to another database (any backend to any other), verified; run again to continue",
        description="Copy every table to another database, ids and timestamps kept, then compare both sides. "
        "The source is only read. The target must be empty, or hold this copy's unfinished run, "
        "which running the same command again continues.",
    )
    copy.add_argument("--from", dest="source", metavar="PATH_OR_URL", help="the database to copy (default: --db)")
    copy.add_argument("--to", dest="destination", metavar="PATH_OR_URL", required=True, help="the database to fill")
    _common(copy)
    copy.set_defaults(run=_run_copy, parser=copy)

    dump = commands.add_parser(
        "dump",
        help="write every row of --db to a JSON Lines file (.gz: compressed), read in one snapshot",
        description="Write every row of the database --db names to FILE as JSON Lines (gzip when FILE ends in .gz): "
        "a header naming the schema revision, one line per row, a checksum last.",
    )
    dump.add_argument("file", metavar="FILE")
    _common(dump)
    dump.set_defaults(run=_run_dump, parser=dump)

    restore = commands.add_parser(
        "restore",
        help="load a dump into --db (empty, or this restore's unfinished run), verified",
        description="Check FILE (a dump: its checksum and row counts) and load it into the database --db names, "
        "created if missing; then compare the two. Running it again continues an interrupted restore.",
    )
    restore.add_argument("file", metavar="FILE")
    _common(restore)
    restore.set_defaults(run=_run_restore, parser=restore)


def _common(parser: argparse.ArgumentParser) -> None:
    add_db_option(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON (no progress bar)")
    parser.add_argument(
        "--batch-size", type=count, default=DEFAULT_BATCH, help=f"rows per transaction (default: {DEFAULT_BATCH})"
    )


def _run_copy(args: argparse.Namespace) -> int:
    source = database_of(args.source or getattr(args, "db", None), must_exist=True)
    target = database_of(args.destination, must_exist=False)

    def work(progress: Callable[[Any], None] | None) -> TransferReport:
        return copy_database(source, target, progress=progress, batch_size=args.batch_size or 1)

    again = f"starpod-session db copy --from {source.shown} --to {target.shown}"
    return _interruptible(args, work, f"every batch copied so far is kept in {target.shown}", again)


def _run_dump(args: argparse.Namespace) -> int:
    source = database_of(getattr(args, "db", None), must_exist=True)

    def work(progress: Callable[[Any], None] | None) -> TransferReport:
        return dump_database(source, args.file, progress=progress)

    again = f"starpod-session db dump --db {source.shown} {args.file}"
    return _interruptible(args, work, f"nothing was written to {args.file}", again)


def _run_restore(args: argparse.Namespace) -> int:
    target = database_of(getattr(args, "db", None), must_exist=False)

    def work(progress: Callable[[Any], None] | None) -> TransferReport:
        return restore_database(args.file, target, progress=progress, batch_size=args.batch_size or 1)

    again = f"starpod-session db restore --db {target.shown} {args.file}"
    return _interruptible(args, work, f"every batch restored so far is kept in {target.shown}", again)


def _interruptible(
    args: argparse.Namespace, work: Callable[[Callable[[Any], None] | None], TransferReport], kept: str, again: str
) -> int:
    """Run ``work`` with a progress bar; Ctrl-C says what is kept and which command continues."""
    try:
        with progress_display(not args.json) as progress:
            report = work(progress)
    except KeyboardInterrupt:
        hint = " (with the password where *** stands)" if "***" in again else ""
        print(f"starpod-session: interrupted; {kept}. To continue, run: {again}{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _print_report(report, args.json)


def _print_report(report: TransferReport, as_json: bool) -> int:
    if as_json:
        print_json(jsonable(report))
        return 0
    verb = "resumed and finished" if report.resumed else "done"
    print(f"{report.source} -> {report.target}: {verb}")
    for name, rows in report.rows:
        print(f"  {name}: {rows} rows")
    if report.checks:
        print("checked:")
        for check in report.checks:
            mark = "ok" if check.ok else "DIFFERS"
            same = check.source == check.target
            print(f"  {mark}  {check.name}: {check.source}" + ("" if same else f" / {check.target}"))
    return 0
