"""The progress bar of the long commands (clear, verify, load-reference,
export-daily, backup): on stderr, with a rate and an estimate of the time
left, only on a terminal; nothing in a pipe or under --json."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from medsettle.ledger.progress import Hooks


class RateColumn(ProgressColumn):
    """Items per second, in the command's own unit ("entries/s")."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        # rich's own speed needs two updates; until then, the mean since the start
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed and task.completed:
            speed = task.completed / task.elapsed
        shown = "-" if speed is None else f"{speed:,.0f}"
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


@contextlib.contextmanager
def progress_hooks(description: str, unit: str, quiet: bool = False) -> Iterator[Hooks]:
    """Hooks that draw one bar on stderr while the block runs (quiet: none)."""
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
                   TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(),
                   console=console, transient=True, disable=quiet or not console.is_terminal)
    with bar:
        task = bar.add_task(description, total=None)
        yield Hooks(start=lambda total: bar.update(task, total=total),
                    advance=lambda done: bar.advance(task, done))
