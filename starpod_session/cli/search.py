"""``starpod-session search "QUERY"``: where a conversation mentioned something."""

from __future__ import annotations

import argparse

from rich.table import Table
from rich.text import Text

from .._common.search_query import MARK_CLOSE, MARK_OPEN
from .costs import parse_moment
from .options import add_common_options, console, count, jsonable, open_manager, print_json

__all__ = ["add_search_command"]

_SHORT_ID = 8


def add_search_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``search`` on the top-level parser."""
    search = subparsers.add_parser(
        "search",
        help='full-text search over every message (words, prefix*, "quoted phrases")',
        description='Full-text search over every message: words, prefixes (deploy*) and "quoted phrases".',
    )
    add_common_options(search)
    search.add_argument("query", metavar="QUERY", help='e.g. deploy* "roll back"')
    search.add_argument("--user", help="only this user's messages")
    search.add_argument("--channel", help="only this channel's messages")
    search.add_argument("--session", help="only this session's messages (full id)")
    search.add_argument("--role", action="append", dest="roles", help="only this role (repeatable)")
    search.add_argument(
        "--since", metavar="WHEN", type=parse_moment, help="only messages at or after this moment (as for costs)"
    )
    search.add_argument("--until", metavar="WHEN", type=parse_moment, help="only messages before this moment")
    search.add_argument("--limit", type=count, default=20, help="at most this many hits (default: 20)")
    search.add_argument("--cursor", help="the next page: the cursor printed after a full page")
    search.set_defaults(
        run=_run_search,
        parser=search,
        flags={
            "query": "QUERY",
            "limit": "--limit",
            "user_id": "--user",
            "channel": "--channel",
            "session_id": "--session",
            "roles": "--role",
            "cursor": "--cursor",
            "until": "--until",
        },
    )


def _run_search(args: argparse.Namespace) -> int:
    with open_manager(args) as manager:
        hits = manager.search_messages(
            args.query,
            limit=args.limit,
            user_id=args.user,
            channel=args.channel,
            session_id=args.session,
            since=args.since,
            until=args.until,
            roles=args.roles,
            cursor=args.cursor,
        )
    if args.json:
        print_json(jsonable(hits))
        return 0
    table = Table(title=f"{len(hits)} hit(s) for {args.query!r}", title_justify="left")
    for header in ("time (UTC)", "session", "title", "role", "snippet"):
        table.add_column(header, no_wrap=header in ("time (UTC)", "session", "role"), overflow="fold")
    for hit in hits:
        table.add_row(
            hit.timestamp.strftime("%Y-%m-%d %H:%M"),
            hit.session_id[:_SHORT_ID],
            Text(hit.session_title or ""),
            Text(hit.role),
            _highlighted(hit.snippet),
        )
    out = console()
    out.print(table)
    if hits and len(hits) == args.limit:
        out.print(Text(f"more: --cursor {hits[-1].cursor}"))
    return 0


def _highlighted(snippet: str) -> Text:
    """The snippet with its «marked» terms in bold yellow, the marks removed."""
    text = Text()
    rest = snippet
    while MARK_OPEN in rest and MARK_CLOSE in rest.split(MARK_OPEN, 1)[1]:
        before, rest = rest.split(MARK_OPEN, 1)
        term, rest = rest.split(MARK_CLOSE, 1)
        text.append(before)
        text.append(term, style="bold yellow")
    text.append(rest)
    return text
