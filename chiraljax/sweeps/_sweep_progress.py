"""The progress bar of a sweep (rich), on stderr: points done, rate, elapsed and remaining time."""

from __future__ import annotations

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


class RateColumn(ProgressColumn):
    """Points computed in this run over the time since the bar started (compile excluded:
    the bar starts after it). Chunks finish in bursts (on a CPU the next chunk runs before
    the last is reported), so a windowed rate would swing; the run average does not."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        done = task.completed - task.fields.get("resumed", 0)
        if not elapsed or done <= 0:
            return Text("-- pts/s", style="cyan")
        return Text(f"{done / elapsed:,.0f} pts/s", style="cyan")


def progress_bar(show: bool) -> Progress:
    """A sweep's progress bar on stderr; `show=False` gives a disabled bar that prints nothing."""
    return Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
