"""``starpod-session sessions list | show | archive | unarchive``: what the agent's sessions are,
what was said, and which are put away."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import StarpodSessionError
from ..manager import SessionManager
from ..records import SessionMessage, SessionMeta, UsageSummary
from .options import add_common_options, console, count, jsonable, open_manager, print_json

__all__ = ["add_sessions_commands"]

_TIME = "%Y-%m-%d %H:%M:%S"
_SHORT_TIME = "%Y-%m-%d %H:%M"
#: How many characters of an id the listing shows (``show`` takes any unambiguous start).
_SHORT_ID = 8


def add_sessions_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``sessions`` group (``list``, ``show``) on the top-level parser."""
    sessions = subparsers.add_parser(
        "sessions",
        help="list sessions or show one with its transcript",
        description="List sessions, or show one with its usage and transcript.",
    )
    commands = sessions.add_subparsers(dest="sessions_command", required=True)

    listing = commands.add_parser(
        "list", help="most recently active sessions first", description="Sessions, most recently active first."
    )
    add_common_options(listing)
    listing.add_argument("--limit", type=count, default=20, help="at most this many (default: 20)")
    listing.add_argument("--user", help="only this user's sessions")
    listing.add_argument("--channel", help="only this channel's sessions")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--open", dest="is_closed", action="store_false", default=None, help="only open sessions")
    state.add_argument("--closed", dest="is_closed", action="store_true", help="only closed sessions")
    listing.add_argument("--unread", action="store_true", help="only sessions marked unread")
    _add_archived_options(listing)
    # neither --open nor --closed: both
    listing.set_defaults(
        run=_run_list, parser=listing, flags={"limit": "--limit", "channel": "--channel"}, is_closed=None
    )

    show = commands.add_parser(
        "show",
        help="a session's metadata, usage and transcript",
        description="A session's metadata, usage and transcript.",
    )
    add_common_options(show)
    show.add_argument("session_id", metavar="ID", help="the session id, or an unambiguous start of it")
    show.add_argument("--last", type=count, metavar="N", help="only the last N messages")
    show.set_defaults(run=_run_show, parser=show, flags={"prefix": "ID", "session_id": "ID", "limit": "--last"})
    _add_archive_commands(commands)


def _add_archived_options(listing: argparse.ArgumentParser) -> None:
    """``--archived`` (only archived sessions) and ``--all`` (archived or not); default: not archived."""
    shown = listing.add_mutually_exclusive_group()
    shown.add_argument("--archived", dest="archived", action="store_true", help="only archived sessions")
    shown.add_argument("--all", dest="archived", action="store_const", const=None, help="archived ones too")
    listing.set_defaults(archived=False)


def _add_archive_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sessions archive ID`` and ``sessions unarchive ID``."""
    for name, archived, help_text in (
        ("archive", True, "hide a session from the listing (it stays readable)"),
        ("unarchive", False, "list an archived session again"),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_common_options(command)
        command.add_argument("session_id", metavar="ID", help="the session id, or an unambiguous start of it")
        command.set_defaults(
            run=_run_archive, parser=command, flags={"prefix": "ID", "session_id": "ID"}, archived=archived
        )


def _run_archive(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        session_id = _full_id(manager, args.session_id)
        manager.archive_session(session_id, args.archived)
        meta = manager.get_session(session_id)
    if args.json:
        print_json(jsonable(meta))
    else:
        print(f"{'archived' if args.archived else 'unarchived'} {session_id}")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        found = manager.list_sessions(
            args.limit,
            user_id=args.user,
            channel=args.channel,
            is_closed=args.is_closed,
            is_read=False if args.unread else None,
            archived=args.archived,
        )
    if args.json:
        print_json(jsonable(found))
        return 0
    table = Table(title=f"{len(found)} session(s); --json for full ids", title_justify="left")
    for header in ("id", "last active (UTC)", "channel/key", "user", "state", "reqs", "title"):
        table.add_column(header, no_wrap=header in ("id", "last active (UTC)", "state", "reqs"), overflow="fold")
    for meta in found:
        table.add_row(
            meta.id[:_SHORT_ID],
            meta.last_message_at.strftime(_SHORT_TIME),
            Text(f"{meta.channel}/{meta.channel_session_key or ''}"),
            Text(meta.user_id),
            _state(meta),
            str(meta.message_count),
            Text(meta.title or ""),
        )
    console().print(table)
    return 0


def _state(meta: SessionMeta) -> str:
    state = "closed" if meta.is_closed else "open"
    state = state if meta.is_read else f"{state}, unread"
    return f"{state}, archived" if meta.is_archived else state


def _run_show(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        meta = manager.get_session(_full_id(manager, args.session_id))
        if meta is None:
            raise StarpodSessionError(f"no session with id {args.session_id!r}")
        messages = manager.get_messages(meta.id, limit=args.last)
        usage = manager.session_usage(meta.id)
    if args.json:
        print_json({"session": jsonable(meta), "usage": jsonable(usage), "messages": jsonable(messages)})
        return 0
    out = console()
    out.print(_metadata_table(meta, usage))
    for message in messages:
        _print_message(out, message)
    return 0


def _full_id(manager: SessionManager, typed: str) -> str:
    """The id ``typed`` stands for: itself, or the one session id it begins."""
    matches = manager.session_ids_starting_with(typed)
    if typed in matches or len(matches) != 1:
        if len(matches) > 1 and typed not in matches:
            raise StarpodSessionError(f"{typed!r} is the start of several session ids; type more of it")
        return typed
    return matches[0]


def _metadata_table(meta: SessionMeta, usage: UsageSummary) -> Table:
    table = Table(show_header=False, title=Text(meta.title or "Untitled session"), title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows = [
        ("id", meta.id),
        ("channel", meta.channel + (f" (key {meta.channel_session_key})" if meta.channel_session_key else "")),
        ("user", meta.user_id),
        ("created", meta.created_at.strftime(_TIME) + " UTC"),
        ("last active", meta.last_message_at.strftime(_TIME) + " UTC"),
        ("state", _state(meta)),
        ("requests", str(meta.message_count)),
        ("summary", meta.summary or ""),
        ("triggered by", meta.triggered_by or ""),
        (
            "usage",
            f"${usage.total_cost_usd:.4f} over {usage.total_turns} turns, "
            f"{usage.total_input_tokens} in / {usage.total_output_tokens} out tokens, "
            f"{usage.total_cache_read} cache read / {usage.total_cache_write} cache write",
        ),
    ]
    for name, value in rows:
        table.add_row(name, Text(value))
    return table


def _print_message(console: Console, message: SessionMessage) -> None:
    console.print()
    console.print(Text(f"{message.role} · {message.timestamp.strftime(_TIME)} UTC · #{message.id}", style="bold"))
    console.print(Text(message.content))
