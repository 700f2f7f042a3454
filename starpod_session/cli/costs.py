"""``starpod-session costs``: what the agent spent, per user, per model and per day."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._clock import utc_now
from .._common.timestamps import parse_rfc3339
from ..records import CostOverview, DailyModelCost, ModelCostSummary, ToolUsageSummary, UserCostSummary
from .options import add_common_options, console, jsonable, open_manager, print_json, usage_error

__all__ = ["add_costs_command", "parse_moment"]

#: Width, in characters, of the longest bar of the per-day chart (less in a narrow terminal).
BAR_WIDTH = 40
_BAR_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")
_RELATIVE = re.compile(r"(\d{1,5})d")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ACCEPTED = (
    "accepted: an RFC 3339 instant with its offset (2026-03-01T09:00:00+01:00, 2026-03-01T08:00:00Z), "
    "a UTC date YYYY-MM-DD (from its midnight), or Nd (N days before now, e.g. 7d)"
)
_DAY_LABEL = len("2026-03-01")


def add_costs_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``costs`` on the top-level parser."""
    costs = subparsers.add_parser(
        "costs",
        help="cost and tokens per user, per model and per day; tool calls per tool",
        description="Cost and tokens per user, per model and per UTC day, with a bar chart of each day's cost, "
        "and the tool calls of the period per tool with their errors.",
        epilog="WHEN is Nd (the last N days, e.g. 7d), a UTC date (2026-03-01, from its midnight) "
        "or an RFC 3339 instant with its offset (2026-03-01T09:00:00+01:00). "
        "--since is inclusive, --until exclusive.",
    )
    add_common_options(costs)
    costs.add_argument(
        "--since", metavar="WHEN", type=parse_moment, help="from this moment (default: the first usage row)"
    )
    costs.add_argument(
        "--until", metavar="WHEN", type=parse_moment, help="up to, not including, this moment (default: now)"
    )
    costs.set_defaults(run=_run_costs, parser=costs)


def parse_moment(text: str) -> datetime:
    """An argparse type: ``7d`` is now minus 7 days, ``YYYY-MM-DD`` that UTC midnight, else RFC 3339."""
    if relative := _RELATIVE.fullmatch(text):
        return utc_now() - timedelta(days=int(relative[1]))
    try:
        if _DAY.fullmatch(text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        return parse_rfc3339(text)
    except ValueError:
        pass
    try:
        parse_rfc3339(text + "Z")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; {_ACCEPTED}") from None
    raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +HH:MM; {_ACCEPTED}")


def _run_costs(args: argparse.Namespace) -> int:
    since, until = args.since, args.until
    if since is not None and until is not None and until < since:
        usage_error(args, "--until", f"{_shown(until)} is before --since ({_shown(since)})")
    with open_manager(args) as manager:
        overview = manager.cost_overview(since=since, until=until)
    if args.json:
        print_json({"since": _iso(since), "until": _iso(until), "overview": jsonable(overview)})
        return 0
    out = console()
    if not overview.by_model and not overview.by_tool:
        out.print(_nothing_between(since, until))
        return 0
    _print_report(out, overview, since, until)
    return 0


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _shown(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _nothing_between(since: datetime | None, until: datetime | None) -> Text:
    end = _shown(until or utc_now())
    return Text(f"No usage between {_shown(since)} and {end}." if since else f"No usage before {end}.")


def _print_report(console: Console, overview: CostOverview, since: datetime | None, until: datetime | None) -> None:
    span = f"from {_shown(since) if since else 'the start'} until {_shown(until) if until else 'now'}"
    console.print(
        Text(
            f"Total ${overview.total_cost_usd:.4f} over {overview.total_turns} turns ({span}): "
            f"{overview.total_input_tokens} input, {overview.total_output_tokens} output, "
            f"{overview.total_cache_read} cache read, {overview.total_cache_write} cache write tokens"
        )
    )
    console.print()
    console.print(_breakdown("By user", "user", [(u.user_id, u) for u in overview.by_user]))
    console.print(_breakdown("By model", "model", [(m.model, m) for m in overview.by_model]))
    models = [m.model for m in overview.by_model]  # the chart's colours and legend follow the table
    if overview.by_day:  # a range may hold tool calls but no usage
        console.print(Text("Cost per day (UTC)", style="italic"))
        for line in _day_chart(overview.by_day, models, console.width):
            console.print(line, no_wrap=True, crop=False)
    if overview.by_tool:
        console.print(_tool_table(overview.by_tool))


def _breakdown(title: str, label: str, rows: Sequence[tuple[str, UserCostSummary | ModelCostSummary]]) -> Table:
    # No vertical rules: six full-width numbers and a name fit an 80-column terminal.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
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
    table = Table(title="By tool", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("tool", overflow="fold")
    for header in ("invocations", "errors", "error rate"):
        table.add_column(header, justify="right", no_wrap=True)
    for tool in by_tool:
        rate = tool.errors / tool.invocations if tool.invocations else 0.0
        table.add_row(Text(tool.tool_name), str(tool.invocations), str(tool.errors), f"{rate:.1%}")
    return table


def _day_chart(by_day: Sequence[DailyModelCost], models: list[str], width: int) -> list[Text]:
    """One line per UTC day from the first to the last with usage: the day, a bar split by model
    (in ``models`` order), the day's cost; the bars shrink so that every line fits ``width``."""
    style = {model: _BAR_STYLES[index % len(_BAR_STYLES)] for index, model in enumerate(models)}
    rank = {model: index for index, model in enumerate(models)}
    days: dict[date, list[DailyModelCost]] = {}
    for entry in by_day:
        days.setdefault(entry.day, []).append(entry)
    amounts = {day: f"${sum(entry.total_cost_usd for entry in entries):.4f}" for day, entries in days.items()}
    largest = max(sum(entry.total_cost_usd for entry in entries) for entries in days.values()) or 1.0
    amount_width = max(len(amount) for amount in amounts.values())
    bar_width = max(1, min(BAR_WIDTH, width - _DAY_LABEL - amount_width - 2))
    lines = []
    day, last = min(days), max(days)
    while day <= last:
        bar, spent = Text(), 0.0
        for entry in sorted(days.get(day, []), key=lambda entry: rank[entry.model]):
            start = round(spent / largest * bar_width)
            spent += entry.total_cost_usd
            bar.append("█" * (round(spent / largest * bar_width) - start), style=style[entry.model])
        bar.pad_right(bar_width - len(bar))
        lines.append(
            Text(f"{day.isoformat()} ").append_text(bar).append(f" {amounts.get(day, '$0.0000'):>{amount_width}}")
        )
        day += timedelta(days=1)
    return lines + _legend(models, style, width)


def _legend(models: list[str], style: dict[str, str], width: int) -> list[Text]:
    """``█ model`` for each model in order, as many to a line as ``width`` allows."""
    lines = [Text()]
    for model in models:
        if len(lines[-1]) and len(lines[-1]) + 2 + len(model) + 2 > width:
            lines.append(Text())
        lines[-1].append("█ ", style=style[model]).append(f"{model}  ")
    for line in lines:
        line.rstrip()
    return lines
