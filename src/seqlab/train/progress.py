"""Live progress bars on stderr (terminals only): `TrainProgress` (step, loss, tokens/s and ETA, rank 0)
for the trainers, `RichReporter` (phase by phase) for SeqGAN."""

from __future__ import annotations

import math
import time
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


class Throughput:
    """Tokens per second of training time: `tick` at log steps, `restart` after evaluations (not counted)."""

    def __init__(self) -> None:
        self.train_time, self.train_tokens = 0.0, 0.0
        self.restart()

    def restart(self) -> None:
        self.since = time.perf_counter()

    def tick(self, tokens: float) -> float:
        """tokens/s for the `tokens` trained since the last tick or restart."""
        elapsed = time.perf_counter() - self.since
        self.train_time, self.train_tokens = self.train_time + elapsed, self.train_tokens + tokens
        self.restart()
        return tokens / max(elapsed, 1e-9)

    @property
    def overall(self) -> float:
        return self.train_tokens / self.train_time if self.train_time else math.nan


class Reporter:
    """Where a SeqGAN run reports progress; the default says nothing (the CLI passes a `RichReporter`)."""

    def phase(self, label: str, total: int, completed: int) -> None:
        """A new phase of `total` units starts (`completed` already done, when resuming)."""

    def update(self, completed: int, **fields: float) -> None:
        """Progress within the phase, with values to show (nll, d_acc, ...)."""


class RichReporter(Reporter):
    """A rich progress bar on stderr: phase, units done, NLL-oracle, D accuracy, loss / reward."""

    def __init__(self, enabled: bool, console: Console | None = None):
        console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 disable=not (enabled and console.is_terminal))
        self.task = None
        self.values: dict[str, float] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase(self, label: str, total: int, completed: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.values = {}
        self.task = self.progress.add_task(label, total=max(total, 1), completed=completed, info="")

    def update(self, completed: int, **fields: float) -> None:
        self.values |= fields
        names = {"nll": "NLL-oracle", "d_acc": "D acc", "loss": "loss", "reward": "reward"}
        info = "  ".join(f"{names.get(k, k)} {v:.3f}" for k, v in self.values.items())
        self.progress.update(self.task, completed=completed, info=info)
