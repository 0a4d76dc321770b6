"""Ctrl-C as a request: the first SIGINT sets a flag the loop checks between steps (so it can save a
checkpoint and exit 130); a second one interrupts at once."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class InterruptFlag:
    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
