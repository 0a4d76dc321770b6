"""Ctrl-C and SIGTERM as a request to stop: the first SIGINT or SIGTERM sets a flag the trainer checks
between steps, so that it saves a checkpoint and raises `Interrupted`; a second signal interrupts at once.

The trainer commands run inside `exit_on_interrupt()`, which turns `Interrupted` into one line on stderr
and the exit code a shell gives a process killed by that signal, 128 + its number: 130 for SIGINT, 143
for SIGTERM. Only the trainers install the handler; every other command keeps Python's defaults
(SIGTERM ends it at once).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; `message` says where its checkpoint is and how to resume."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "interrupted"):
        super().__init__(message)
        self.signum, self.message = int(signum), message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class InterruptFlag:
    """`with InterruptFlag() as interrupt:` ... `if interrupt.requested: save; raise interrupt.stop(msg)`."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def stop(self, message: str) -> Interrupted:
        """The exception to raise once the checkpoint is saved (SIGINT when no signal came to this process,
        e.g. a DDP rank stopping because another one was interrupted)."""
        return Interrupted(self.signum or signal.SIGINT, message)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise Interrupted(signum)
        self.signum = signum

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        self._previous = {}


@contextmanager
def exit_on_interrupt() -> Iterator[None]:
    """For a trainer command: `Interrupted` -> its message on stderr and exit 128 + signum. (Typer turns any
    KeyboardInterrupt that leaves a command into a silent exit 130, so it has to be caught here.)"""
    try:
        yield
    except Interrupted as e:
        print(f"seqlab: {e.message}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
