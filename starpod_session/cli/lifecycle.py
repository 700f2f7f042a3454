"""``sessions delete ID``, ``users forget USER`` and ``prune --older-than 90d``: erasing data on purpose.

Each asks for confirmation on a terminal; ``--yes`` skips the question, and
without ``--yes`` they refuse to run when stdin is not a terminal, so a script
never erases by accident. ``--dry-run`` only says what would go.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta

from ..errors import StarpodSessionError
from ..records import Erasure
from .options import add_common_options, jsonable, open_manager, print_json
from .progress import EXIT_INTERRUPTED, counter_display

__all__ = ["add_lifecycle_commands", "parse_age"]

_AGE = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w`` or ``30m`` as a timedelta (an argparse type)."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 90d, 12h, 2w or 30m")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def add_lifecycle_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sessions delete`` (on the existing ``sessions`` group), ``users forget`` and ``prune``."""
    sessions_group = subparsers.choices["sessions"]
    [sessions] = [a for a in sessions_group._actions if isinstance(a, argparse._SubParsersAction)]
    delete = sessions.add_parser(
        "delete",
        help="delete a session, its messages, compactions and transcript",
        description="Delete a session, its messages, compactions and transcript.",
    )
    _add_options(delete)
    delete.add_argument("session_id", metavar="ID", help="the full session id")
    delete.add_argument("--drop-usage", action="store_true", help="delete its usage rows too (kept by default)")
    delete.set_defaults(run=_run_delete, parser=delete, flags={"session_id": "ID"})

    users = subparsers.add_parser("users", help="erase a user's data", description="Erase a user's data.")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    forget = user_commands.add_parser(
        "forget",
        help="erase every session, message and transcript of a user",
        description="Erase every session, message and transcript of a user; their usage rows keep a pseudonym.",
    )
    _add_options(forget)
    forget.add_argument("user_id", metavar="USER")
    forget.set_defaults(run=_run_forget, parser=forget, flags={"user_id": "USER"})

    prune = subparsers.add_parser(
        "prune",
        help="delete closed sessions inactive for longer than an age",
        description="Delete closed sessions inactive for longer than an age, in batches.",
    )
    _add_options(prune)
    prune.add_argument("--older-than", type=parse_age, required=True, metavar="AGE", help="e.g. 90d, 12h, 2w")
    prune.add_argument("--drop-usage", action="store_true", help="delete their usage rows too (kept by default)")
    prune.set_defaults(run=_run_prune, parser=prune, flags={"older_than": "--older-than"})


def _add_options(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")


def _confirm(args: argparse.Namespace, question: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise StarpodSessionError(f"{question} Refusing without --yes: stdin is not a terminal")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise StarpodSessionError("cancelled: nothing was deleted")


def _report(args: argparse.Namespace, erasure: Erasure, verb: str) -> int:
    if args.json:
        print_json({"dry_run": args.dry_run, **jsonable(erasure)})
    else:
        print(
            f"{verb}: {erasure.sessions} session(s), {erasure.messages} message(s), "
            f"{erasure.compactions} compaction(s), {erasure.transcripts} transcript(s); "
            f"usage rows {'deleted' if getattr(args, 'drop_usage', False) else 'changed'}: {erasure.usage_rows}"
        )
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        meta = manager.get_session(args.session_id)
        if meta is None:
            raise StarpodSessionError(f"no session with id {args.session_id!r}")
        if args.dry_run:
            counted = manager.delete_session(meta.id, keep_usage=not args.drop_usage, dry_run=True)
            return _report(args, counted, "would delete")
        _confirm(args, f"Delete session {meta.id} ({meta.title or 'untitled'}) of {meta.user_id}?")
        return _report(args, manager.delete_session(meta.id, keep_usage=not args.drop_usage), "deleted")


def _run_forget(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        if args.dry_run:
            return _report(args, manager.forget_user(args.user_id, dry_run=True), "would erase")
        _confirm(args, f"Erase every session, message and transcript of user {args.user_id!r}?")
        return _report(args, manager.forget_user(args.user_id), "erased")


def _run_prune(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        keep_usage = not args.drop_usage
        if args.dry_run:
            return _report(args, manager.prune(args.older_than, dry_run=True, keep_usage=keep_usage), "would prune")
        _confirm(args, f"Delete every closed session inactive for more than {args.older_than}?")
        total = manager.prune(args.older_than, dry_run=True, keep_usage=keep_usage).sessions
        pruned = 0

        with counter_display(not args.json, "prune", total, "sessions") as progress:

            def count(done: int) -> None:
                nonlocal pruned
                pruned = done
                if progress is not None:
                    progress(done)

            try:
                erasure = manager.prune(args.older_than, keep_usage=keep_usage, progress=count)
            except KeyboardInterrupt:
                print(
                    f"starpod-session: interrupted; {pruned} of {total} sessions pruned (each batch deleted whole, "
                    "the others kept). To prune the rest, run the same command again.",
                    file=sys.stderr,
                )
                return EXIT_INTERRUPTED
        return _report(args, erasure, "pruned")
