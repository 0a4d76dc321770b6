"""A model's worker: it owns the model, takes requests from a bounded queue and decodes them in one batch.

    worker = BatchWorker(model, tokenizer, ReplyPolicy(), max_batch=8, max_queue=64)
    submission = worker.submit(GenerationRequest(prompt, [options]))   # QueueFull when the queue is full
    async for event in submission:        # Event: a text piece, or a choice's end (finish_reason, usage, ...)
        ...
    submission.cancel()                    # the client left: its choices leave the batch before the next step

The HTTP layer sees only the `Worker` protocol: `submit`, `active_slots` (choices being decoded),
`queue_depth` (requests waiting for a slot) and `max_step_rows` (the most rows one decode step has run).

`BatchWorker` is one thread per model that owns a `seqlab.decode.batching.ContinuousBatch` of up to
`max_batch` rows. Each choice of a request is a slot: a row of the batch, with the choice's own options and
seed (choice i of a request with `seed` has seed + i). The thread loops while any slot is active:

1. slots whose request was cancelled leave the batch (`remove`): a client that disconnects frees its
   slots before the next step;
2. waiting requests take the free slots, oldest first, choice by choice (a request with more choices than
   `max_batch` starts its first ones and the rest as slots free up): each choice joins the batch (`add`,
   which checks it), and the next step prefills the prompts of all that joined together. When nothing is
   decoding, the thread first waits while requests keep arriving (one more at least every 2 ms, 20 ms at
   most: `_gather`), so that a burst of clients prefills together, not its first request alone and the
   rest one prefill later (a lone request waits 2 ms);
3. one beam-search choice, if any waits, is decoded whole by `seqlab.decode.generate` (a batch cannot run
   beam search): the batch's rows wait that long, one search (not the queue of them) per step. E.g. 4
   beams x 64 tokens of a GPT-2-shaped 6 x 384 model take 0.4 s on 2 CPU threads, some 50 steps of a
   16-row batch (8 ms each);
4. `step()`: one model call over every row (with `compile_step`, through the step compiled for 1, 2, 4, ...
   rows, `seqlab.decode.bucketed`: the thread compiles every size before it takes a request, `ready`); each row's token and text go through the choice's stop
   strings and reply policy (`seqlab.serve.generation.ChoiceReply`) to its request's events. A row that
   ends leaves the batch; a reply the policy regenerates gets a new row at once (the flagged words banned,
   the same seed), which joins at the next step.

Events reach the event loop that submitted the request through `call_soon_threadsafe`, one call per loop
and step (`post`: each call wakes the loop, and 16 streams would wake it 16 times a step), so the loop
never waits for the worker. An error the engine raises for one choice (a SeqlabError:
the client's options) ends that request only; an error inside a step ends the requests in the batch,
which starts afresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from seqlab.decode import build_prompt_ids
from seqlab.decode.batching import BatchEvent, ContinuousBatch
from seqlab.errors import SeqlabError
from seqlab.serve.generation import ChoiceReply, Event, GenerationRequest, Token, beam_generation

SEEDS = 2**63  # a seed is in [0, 2^63), as everywhere in seqlab
# a new batch waits for a burst's requests: while one more arrives every 2 ms, at most 20 ms (a lone request: 2 ms)
GATHER_QUIET_SECONDS, GATHER_MAX_SECONDS = 0.002, 0.02


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

    def put(self, *events: Event) -> None:
        """Hand `events` to the reader (from any thread); dropped once the reader's loop has closed."""
        post({self: list(events)})

    def cancel(self) -> None:
        """Stop decoding this request (idempotent): a waiting one leaves the queue now, an active one
        leaves the batch before the worker's next step."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            self._on_cancel(self)

    def _put_now(self, events: Sequence[Event]) -> None:
        for event in events:
            self._events.put_nowait(event)

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


def post(events: dict[Submission, list[Event]]) -> None:
    """Hand each submission its events (from any thread): one `call_soon_threadsafe` per event loop; events
    for a loop that has closed are dropped (nobody reads them)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Submission, list[Event]]]] = {}
    for submission, out in events.items():
        if out:
            by_loop.setdefault(submission._loop, []).append((submission, out))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, batch)
        except RuntimeError:  # the loop has closed
            pass


def _put_all(batch: list[tuple[Submission, list[Event]]]) -> None:
    for submission, out in batch:
        submission._put_now(out)


class Worker(Protocol):
    """What the HTTP layer needs from a model's decoding engine."""

    @property
    def active_slots(self) -> int: ...  # choices being decoded now

    @property
    def queue_depth(self) -> int: ...  # requests waiting for a slot

    @property
    def max_step_rows(self) -> int: ...  # the most rows one decode step has run

    def submit(self, request: GenerationRequest) -> Submission: ...  # raises QueueFull

    def close(self) -> None: ...


@dataclass(eq=False)
class _Slot:
    """A choice being decoded."""

    submission: Submission
    reply: ChoiceReply
    prompt_ids: list[int]
    row: int | None = None  # its generation's request id in the batch (None: beam search, or between rows)


class BatchWorker:
    """The worker of the module docstring: one thread, one continuous batch."""

    def __init__(self, model: Any, tokenizer: Any, policy: Any, *, max_batch: int = 8, max_queue: int = 64,
                 compile_step: bool = False, name: str = "model"):
        if max_batch < 1 or max_queue < 1:
            raise SeqlabError(f"--max-batch and --max-queue must be >= 1, got {max_batch} and {max_queue}")
        self.model, self.tokenizer, self.policy, self.compile_step, self.name = model, tokenizer, policy, compile_step, name
        self.max_batch, self.max_queue = max_batch, max_queue
        self.batch = self._new_batch()
        self.ready = threading.Event()  # set once the thread serves (with compile_step: after compiling)
        self.steps = 0  # decode steps run
        self.max_step_rows = 0  # the most rows one of them ran
        self._pending: deque[Submission] = deque()  # waiting for slots, oldest first
        self._started = 0  # choices of the oldest waiting request that have slots already
        self._slots: list[_Slot] = []  # active; only the worker's thread changes it (and the rest below)
        self._rows: dict[int, _Slot] = {}  # batch request id -> its slot
        self._beams: deque[_Slot] = deque()  # beam-search slots waiting for their turn
        self._row_ids = itertools.count()
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
            if self._pending and self._pending[0] is submission:
                self._started = 0
            if submission in self._pending:
                self._pending.remove(submission)

    # ------------------------------------------------------------------ the worker's thread

    def _run(self) -> None:
        torch.set_grad_enabled(False)  # per thread; the engine's own no_grad covers each call too
        try:
            self.batch.warm_up()  # compile_step: every size of the batch's compiled step, before any request
        finally:
            self.ready.set()
        while True:
            with self._wake:
                while not self._closed and not self._slots and not self._pending:
                    self._wake.wait()
                if self._closed:
                    break
                if not self._slots:
                    self._gather()
                starts = self._admit()
            self._drop_cancelled()
            for submission, index in starts:
                self._start(submission, index)
            if self._beams:
                self._beam_search(self._beams.popleft())
            if len(self.batch):
                self._step()
        for submission in {*(s.submission for s in self._slots), *self._pending}:
            submission.put(Event(0, error=SeqlabError("the server is shutting down")))

    def _gather(self) -> None:
        """A new batch (nothing decoding): wait while requests keep arriving — every GATHER_QUIET_SECONDS at
        least one more, GATHER_MAX_SECONDS at most — so that a burst prefills together (called holding the
        lock; waiting releases it, and the GIL, to the event loop parsing them)."""
        deadline = time.monotonic() + GATHER_MAX_SECONDS
        waiting = len(self._pending)
        while not self._closed and waiting < self.max_batch and time.monotonic() < deadline:
            self._wake.wait(GATHER_QUIET_SECONDS)
            if len(self._pending) == waiting:  # none came: the burst, if any, is in
                return
            waiting = len(self._pending)

    def _admit(self) -> list[tuple[Submission, int]]:
        """The waiting choices that take the free slots, oldest first (called holding the lock)."""
        starts: list[tuple[Submission, int]] = []
        free = self.max_batch - len(self._slots)
        while self._pending and len(starts) < free:
            head = self._pending[0]
            starts.append((head, self._started))
            self._started += 1
            if self._started == len(head.request.choices):
                self._pending.popleft()
                self._started = 0
        return starts

    def _start(self, submission: Submission, index: int) -> None:
        if submission.cancelled.is_set():
            return
        request = submission.request
        options = request.choices[index]
        if options.do_sample and options.seed is None:  # a seed, so that regenerate's retries repeat the text sent
            options = dataclasses.replace(options, seed=random.randrange(SEEDS))
        try:
            prompt_ids = build_prompt_ids(self.tokenizer, request.prompt)
            reply = ChoiceReply(index, options, self.policy, request.token_ids, request.top_logprobs)
            slot = _Slot(submission, reply, prompt_ids)
        except Exception as error:  # a SeqlabError is the client's (a 400); anything else a bug
            self._fail(submission, index, error)
            return
        self._slots.append(slot)
        self._generate(slot)

    def _generate(self, slot: _Slot) -> None:
        """Start the slot's next generation: a row that joins at the next step, or a turn at beam search."""
        options = slot.reply.options()
        if options.num_beams > 1:
            self._beams.append(slot)
            return
        row = next(self._row_ids)
        try:
            self.batch.add(row, slot.prompt_ids, options, top_logprobs=slot.submission.request.top_logprobs)
        except Exception as error:
            self._release(slot)
            self._fail(slot.submission, slot.reply.index, error)
            return
        slot.row = row
        self._rows[row] = slot

    def _step(self) -> None:
        """One decode step over the batch; each row's token to its slot, the events to their requests."""
        self.steps += 1
        self.max_step_rows = max(self.max_step_rows, len(self.batch))
        try:
            batch_events = self.batch.step()
        except Exception as error:  # a bug: the batch's state is unknown, so every row's request ends
            self._restart_batch(error)
            return
        events: dict[Submission, list[Event]] = {}
        for batch_event in batch_events:
            slot = self._rows[batch_event.request_id]
            events.setdefault(slot.submission, []).extend(self._take(slot, batch_event))
        post(events)

    def _take(self, slot: _Slot, event: BatchEvent) -> list[Event]:
        """A row's token: its events; the row leaves when it ends or the policy stops it."""
        reply = slot.reply
        events = reply.push([Token(event.token_id, event.logprob, event.top_logprobs)], event.text)
        if not (event.final or reply.stopped):
            return events
        assert slot.row is not None
        self.batch.remove(slot.row)  # a row that ended has left already
        del self._rows[slot.row]
        slot.row = None
        events += reply.end(event.finish_reason, event.confidence)
        if reply.done:
            self._slots.remove(slot)
        else:
            self._generate(slot)
        return events

    def _beam_search(self, slot: _Slot) -> None:
        try:
            generation = beam_generation(self.model, self.tokenizer, slot.prompt_ids, slot.reply.options(),
                                         self.compile_step)
        except Exception as error:
            self._release(slot)
            self._fail(slot.submission, slot.reply.index, error)
            return
        reply = slot.reply
        events = reply.push(generation.tokens, generation.text)
        events += reply.end(generation.finish_reason, generation.confidence)
        if reply.done:
            self._slots.remove(slot)
        else:
            self._beams.append(slot)
        slot.submission.put(*events)

    def _drop_cancelled(self) -> None:
        for slot in [s for s in self._slots if s.submission.cancelled.is_set()]:
            self._release(slot)

    def _release(self, slot: _Slot) -> None:
        """The slot leaves: its row leaves the batch before the next step."""
        self._slots.remove(slot)
        if slot.row is not None:
            self.batch.remove(slot.row)
            del self._rows[slot.row]
        if slot in self._beams:
            self._beams.remove(slot)

    def _fail(self, submission: Submission, index: int, error: BaseException) -> None:
        """The request ends with `error`; its other choices leave."""
        submission.put(Event(index, error=error))
        submission.cancel()

    def _restart_batch(self, error: BaseException) -> None:
        for slot in [s for s in self._slots if s.row is not None]:
            self._slots.remove(slot)
            self._fail(slot.submission, slot.reply.index, error)
        self._rows.clear()
        self.batch = self._new_batch()

    def _new_batch(self) -> ContinuousBatch:
        return ContinuousBatch(self.model, self.tokenizer, max_batch=self.max_batch, compile=self.compile_step)
