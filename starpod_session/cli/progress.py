"""Progress bars of the long commands (``db copy | dump | restore | upgrade``, ``prune``,
``sessions export --all``): drawn with rich on stderr when it is a terminal, never on a pipe
or with ``--json``; the library calls only take a callback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["EXIT_INTERRUPTED", "counter_display", "progress_display"]

#: The exit status of a long command stopped by Ctrl-C (128 + SIGINT), after it said how to go on.
EXIT_INTERRUPTED = 130


#: What a step without a table counts, where it is not rows.
_UNITS = {("read", None): "bytes", ("upgrade", None): "migrations"}


class _Rate(ProgressColumn):
    """Rows (or bytes) per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "rows")
        return Text(f"{speed or 0:,.0f} {unit}/s", style="progress.data.speed")


@contextmanager
def progress_display(wanted: bool, console: Console | None = None) -> Iterator[Callable[[Any], None] | None]:
    """A progress callback drawing one bar per step and table (rows/s, time left) on a terminal's stderr;
    ``None`` when not ``wanted`` (``--json``) or when stderr is not a terminal."""
    console = console or Console(stderr=True)
    if not wanted or not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[tuple[str, str | None], TaskID] = {}

        def show(event: Any) -> None:  # a TransferProgress, or anything with its four fields
            key = (event.step, event.table)
            if key not in tasks:
                name = f"{event.step} {event.table}" if event.table else event.step
                unit = getattr(event, "unit", None) or _UNITS.get((event.step, event.table), "rows")
                tasks[key] = bar.add_task(name, total=max(event.total, 1), unit=unit)
            bar.update(tasks[key], completed=event.done, total=max(event.total, 1))

        yield show


@contextmanager
def counter_display(
    wanted: bool, name: str, total: int, unit: str, console: Console | None = None
) -> Iterator[Callable[[int], None] | None]:
    """One bar of ``total`` ``unit`` (sessions, transcripts): a callback taking how many are done so far."""
    with progress_display(wanted, console) as show:
        if show is None:
            yield None
            return

        def done(count: int) -> None:
            show(_Event(name, unit, count, total))  # one bar named after the step

        done(0)
        yield done


class _Event:
    """A progress event of a count (no table): ``step``, ``unit``, ``done`` of ``total``."""

    def __init__(self, step: str, unit: str, done: int, total: int) -> None:
        self.step, self.unit, self.done, self.total = step, unit, done, total
        self.table: str | None = None
