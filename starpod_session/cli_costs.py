"""``starpod-session costs``: what the agent spent, per user, per model and per day, and its tool calls."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ._clock import utc_now
from .cli_options import add_common_options, jsonable, open_manager, print_json
from .records import CostOverview, DailyModelCost, ToolUsageSummary

__all__ = ["add_costs_command", "parse_moment"]

#: Width, in characters, of the longest bar of the per-day chart.
BAR_WIDTH = 40
_BAR_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")
_RELATIVE = re.compile(r"(\d{1,5})d")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def add_costs_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``costs`` on the top-level parser."""
    costs = subparsers.add_parser(
        "costs",
        help="cost and tokens per user, per model and per day; tool calls per tool",
        description="Cost and tokens per user, per model and per UTC day, with a bar chart of each day's cost, "
        "and the tool calls of the period per tool with their errors.",
        epilog="WHEN is Nd (the last N days, e.g. 7d), a UTC date (2026-03-01, from its midnight) "
        "or an RFC 3339 instant (2026-03-01T09:00:00+01:00). --since is inclusive, --until exclusive.",
    )
    add_common_options(costs)
    costs.add_argument("--since", metavar="WHEN", help="from this moment (default: the first usage row)")
    costs.add_argument("--until", metavar="WHEN", help="up to, not including, this moment (default: now)")
    costs.set_defaults(run=_run_costs)


def parse_moment(text: str | None) -> datetime | str | None:
    """``7d`` → now minus 7 days; ``YYYY-MM-DD`` → that UTC midnight; anything else is left to
    :meth:`SessionManager.cost_overview` to parse as RFC 3339 (and to reject)."""
    if text is None:
        return None
    if relative := _RELATIVE.fullmatch(text):
        return utc_now() - timedelta(days=int(relative[1]))
    if _DAY.fullmatch(text):
        try:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        except ValueError:
            return text  # e.g. 2026-02-30: rejected, by name, by the manager
    return text


def _run_costs(args: argparse.Namespace) -> int:
    since, until = parse_moment(args.since), parse_moment(args.until)
    with open_manager(args) as manager:
        overview = manager.cost_overview(since=since, until=until)
    if args.json:
        print_json({"since": _iso(since), "until": _iso(until), "overview": jsonable(overview)})
        return 0
    Console().print(_report(overview, since, until))
    return 0


def _iso(moment: datetime | str | None) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _report(overview: CostOverview, since: datetime | str | None, until: datetime | str | None) -> Group:
    span = f"from {_iso(since) or 'the start'} until {_iso(until) or 'now'}"
    totals = Text(
        f"Total ${overview.total_cost_usd:.4f} over {overview.total_turns} turns ({span}): "
        f"{overview.total_input_tokens} input, {overview.total_output_tokens} output, "
        f"{overview.total_cache_read} cache read, {overview.total_cache_write} cache write tokens"
    )
    by_user = _breakdown("By user", "user", [(u.user_id, u) for u in overview.by_user])
    by_model = _breakdown("By model", "model", [(m.model, m) for m in overview.by_model])
    return Group(totals, Text(), by_user, by_model, _day_chart(overview.by_day), _tool_table(overview.by_tool))


def _breakdown(title: str, label: str, rows: Sequence[tuple[str, object]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(label, overflow="fold")
    for header in ("cost (USD)", "turns", "input", "output", "cache read", "cache write"):
        table.add_column(header, justify="right", no_wrap=True)
    for name, totals in rows:
        table.add_row(
            Text(name),
            f"{totals.total_cost_usd:.4f}",
            str(totals.total_turns),
            str(totals.total_input_tokens),
            str(totals.total_output_tokens),
            str(totals.total_cache_read),
            str(totals.total_cache_write),
        )
    return table


def _tool_table(by_tool: Sequence[ToolUsageSummary]) -> Table:
    """Calls per tool, most called first, with errors and the share of calls that failed."""
    table = Table(title="By tool", title_justify="left")
    table.add_column("tool", overflow="fold")
    for header in ("invocations", "errors", "error rate"):
        table.add_column(header, justify="right", no_wrap=True)
    for tool in by_tool:
        rate = tool.errors / tool.invocations if tool.invocations else 0.0
        table.add_row(Text(tool.tool_name), str(tool.invocations), str(tool.errors), f"{rate:.1%}")
    return table


def _day_chart(by_day: Sequence[DailyModelCost]) -> Table:
    """One bar per UTC day from the first to the last with usage, split by model."""
    table = Table(title="Cost per day (UTC)", title_justify="left", show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    if not by_day:
        return table
    models = list(dict.fromkeys(entry.model for entry in by_day))
    style = {model: _BAR_STYLES[index % len(_BAR_STYLES)] for index, model in enumerate(models)}
    days: dict[date, list[DailyModelCost]] = {}
    for entry in by_day:
        days.setdefault(entry.day, []).append(entry)
    day_totals = {day: sum(entry.total_cost_usd for entry in entries) for day, entries in days.items()}
    largest = max(day_totals.values()) or 1.0
    day, last = min(days), max(days)
    while day <= last:
        bar = Text()
        for entry in days.get(day, []):
            bar.append("█" * round(entry.total_cost_usd / largest * BAR_WIDTH), style=style[entry.model])
        table.add_row(day.isoformat(), bar, f"${day_totals.get(day, 0.0):.4f}")
        day += timedelta(days=1)
    legend = Text()
    for model in models:
        legend.append("█ ", style=style[model]).append(f"{model}  ")
    table.add_row("", legend, "")
    return table
