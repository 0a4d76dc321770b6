"""A live progress bar on stderr (rank 0, terminals only): step, loss, tokens/s and ETA."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """`with TrainProgress(...) as bar: bar.update(step, loss, tokens_per_s)`; `bar.print` writes above it."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tokens_per_s]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not self.enabled, transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           loss="-", tokens_per_s="-")
        self.quiet = not enabled  # non-main ranks print nothing at all

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def update(self, step: int, loss: float | None = None, tokens_per_s: float | None = None) -> None:
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if tokens_per_s is not None:
            fields["tokens_per_s"] = f"{tokens_per_s:,.0f}"
        self.progress.update(self.task, completed=step, **fields)

    def print(self, *objects: object) -> None:
        if not self.quiet:
            self.progress.console.print(*objects, highlight=False, markup=False, soft_wrap=True)
