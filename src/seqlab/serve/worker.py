"""A model's worker: it owns the model, takes requests from a bounded queue and decodes them.

    worker = ThreadWorker(model, tokenizer, ReplyPolicy(), max_batch=8, max_queue=64)
    submission = worker.submit(GenerationRequest(prompt, [options]))   # QueueFull when the queue is full
    async for event in submission:        # Event: a text piece, or a choice's end (finish_reason, tokens, log-probs)
        ...
    submission.cancel()                    # the client left: its choices leave the worker within one step

The HTTP layer sees only the `Worker` protocol: `submit`, `active_slots` (choices being decoded) and
`queue_depth` (requests waiting for a slot), so a continuously batched engine can take `ThreadWorker`'s
place without touching the routes.

`ThreadWorker` (v1) is one thread per model. Each choice of a request is a *slot*; up to `max_batch`
slots are active at once and the thread takes turns over them: a turn advances every active slot by one
piece (seqlab.serve.generation: `seqlab.decode.stream`, the one streaming generator `seqlab generate` and
`seqlab chat` read too, then the stop strings and the model's reply policy; a piece is one decode step,
or the few a multi-byte character or a held-back stop string or listed word needs). The slots are interleaved, not batched:
a turn costs the sum of its slots' steps, so k active slots each stream at about 1/k of one alone. A
request waits in the queue until there are slots for all its choices; a request with more choices than
`max_batch` runs when the worker is otherwise idle.

A request that wants token ids (log-probs) decodes each choice with one `seqlab.decode.generate` call
instead, which gives the whole text at its end and holds the other slots for that call. A policy that
holds a reply back (the fallback, refuse) makes its whole stream one turn too.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from seqlab.errors import SeqlabError
from seqlab.serve.generation import Event, GenerationRequest, generated_choice, streamed_choice


class QueueFull(Exception):
    """The worker's queue holds `max_queue` requests already."""


class Submission:
    """One request inside a worker: an async iterator over its events, which ends after every choice's
    final event. Filled from the worker's thread; read on the event loop that submitted it."""

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop, on_cancel: Any):
        self.request = request
        self.cancelled = threading.Event()
        self._loop = loop
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._open_choices = len(request.choices)
        self._on_cancel = on_cancel

    def put(self, event: Event) -> None:
        """Hand `event` to the reader (from any thread); dropped once the reader's loop has closed."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:
            pass

    def cancel(self) -> None:
        """Stop decoding this request (idempotent): a waiting one leaves the queue now, an active one
        leaves its slots at the worker's next turn."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            self._on_cancel(self)

    def __aiter__(self) -> Submission:
        return self

    async def __anext__(self) -> Event:
        if self._open_choices == 0:
            raise StopAsyncIteration
        event = await self._events.get()
        if event.error is not None:
            self._open_choices = 0
        elif event.final:
            self._open_choices -= 1
        return event


class Worker(Protocol):
    """What the HTTP layer needs from a model's decoding engine."""

    @property
    def active_slots(self) -> int: ...  # choices being decoded now

    @property
    def queue_depth(self) -> int: ...  # requests waiting for a slot

    def submit(self, request: GenerationRequest) -> Submission: ...  # raises QueueFull

    def close(self) -> None: ...


@dataclass
class _Slot:
    submission: Submission
    index: int  # which of the request's choices
    events: Iterator[Event]


class ThreadWorker:
    """The v1 worker of the module docstring: one thread, interleaved slots, one stream per choice."""

    def __init__(self, model: Any, tokenizer: Any, policy: Any, *, max_batch: int = 8, max_queue: int = 64,
                 compile_step: bool = False, name: str = "model"):
        if max_batch < 1 or max_queue < 1:
            raise SeqlabError(f"--max-batch and --max-queue must be >= 1, got {max_batch} and {max_queue}")
        self.model, self.tokenizer, self.policy, self.compile_step, self.name = model, tokenizer, policy, compile_step, name
        self.max_batch, self.max_queue = max_batch, max_queue
        self._pending: deque[Submission] = deque()  # waiting for slots, oldest first
        self._slots: list[_Slot] = []  # active; only the worker's thread changes it
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"seqlab-serve-{name}", daemon=True)
        self._thread.start()

    @property
    def active_slots(self) -> int:
        return len(self._slots)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def submit(self, request: GenerationRequest) -> Submission:
        """Queue `request` (call it on the event loop that will read the events)."""
        submission = Submission(request, asyncio.get_running_loop(), self._cancelled)
        with self._wake:
            if self._closed or len(self._pending) >= self.max_queue:
                raise QueueFull(f"{self.name}: {len(self._pending)} requests are waiting already")
            self._pending.append(submission)
            self._wake.notify()
        return submission

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _cancelled(self, submission: Submission) -> None:
        with self._wake:
            if submission in self._pending:
                self._pending.remove(submission)

    def _run(self) -> None:
        torch.set_grad_enabled(False)  # per thread; the engine's own no_grad covers each call too
        while True:
            with self._wake:
                while not self._closed and not self._slots and not self._pending:
                    self._wake.wait()
                if self._closed:
                    break
                self._admit()
            self._turn()
        for submission in {*(s.submission for s in self._slots), *self._pending}:
            submission.put(Event(0, error=SeqlabError("the server is shutting down")))

    def _admit(self) -> None:
        """Move waiting requests into slots while all their choices fit (called holding the lock)."""
        while self._pending:
            n = len(self._pending[0].request.choices)
            if self._slots and len(self._slots) + n > self.max_batch:
                return
            submission = self._pending.popleft()
            self._slots += [_Slot(submission, i, self._choice(submission.request, i)) for i in range(n)]

    def _turn(self) -> None:
        """Advance every active slot by one event; drop the finished and the cancelled."""
        for slot in list(self._slots):
            if slot.submission.cancelled.is_set():
                self._slots.remove(slot)
                slot.events.close()  # the engine's generator ends here, between two steps
                continue
            try:
                event = next(slot.events)
            except Exception as error:  # a SeqlabError is the client's (a 400); anything else a bug
                event = Event(slot.index, error=error)
            slot.submission.put(event)
            if event.error is not None:  # the request's other choices stop too
                slot.submission.cancelled.set()
            if event.final:
                self._slots.remove(slot)

    def _choice(self, request: GenerationRequest, index: int) -> Iterator[Event]:
        choice = generated_choice if request.token_ids else streamed_choice
        return choice(self.model, self.tokenizer, self.policy, request.prompt, request.choices[index], index,
                      self.compile_step)
