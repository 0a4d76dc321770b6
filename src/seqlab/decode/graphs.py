"""The GPU fast path: one decode step — and the choice of its token — recorded as a CUDA graph and
replayed for every later token.

A small model's decode step is a few hundred tiny kernels whose launch cost dwarfs the arithmetic;
replaying a captured graph launches them all at once. Capture needs a step with static shapes and
addresses that changes nothing outside its tensors: the model's state is updated in place (a static
KV cache written at a slot *tensor*, positions as tensors) and `reorder_state` keeps buffers in place
when the batch size is unchanged. Models declare it with `capturable_step = True`; seqlab's
TransformerLM state is built that way (see `TransformerState`), so it qualifies.

    step = CapturedStep(model)         # call 1: eager (it is also the warm-up); call 2: capture + replay;
    logits, state = step(tokens, state) # later calls: copy tokens in, replay, read the static logits
    tokens = step.advance(choice, tokens, state, plan)  # the step and the token choice, one graph per plan

`advance` records the step together with a choice (`seqlab.decode.search.Choice`, `beam.Beams.choose`):
the processors, the token choice and the bookkeeping, all written in place and never waiting for the
device, so the host's per-token work is one replay. A graph replays the kernels of its recording with
the host values of then, so there is one graph per *plan* (`ProcessorList.plan`: which length-dependent
processors act; for beam search also whether it is the last step); the first call of a plan runs
eagerly (the warm-up), the second records it.

With `compiled=True` (`generate(..., compile_step=True)` on a GPU) the step recorded is the one
Inductor compiled (`seqlab.decode.compiled.cuda_step`, with freezing: Triton kernels with the
LayerNorms, bias adds, GELU and residuals fused, attention as fused reductions), so the graph replays
fewer kernels. Compiling happens in the warm-up call; if it fails, the eager step is recorded
instead, with a warning.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

SYNC_EVERY_CUDA = 16  # the host checks for "all finished" every this many tokens on a GPU (k >= 8)


def is_capturable(model: Any) -> bool:
    """Whether `model.step` can be captured: declared by the model, or seqlab's TransformerLM."""
    declared = getattr(model, "capturable_step", None)
    if declared is not None:
        return bool(declared)
    from seqlab.models.transformer_lm import TransformerLM

    return isinstance(model, TransformerLM)


def use_fast_path(model: Any, device: torch.device) -> bool:
    return device.type == "cuda" and is_capturable(model)


def sync_interval(device: torch.device, streaming: bool) -> int:
    """How often the host checks whether every sequence has finished (each check waits for the device)."""
    return 1 if streaming or device.type != "cuda" else SYNC_EVERY_CUDA


class CapturedStep:
    """`model.step` as a replayed CUDA graph; the state object must stay the same tensors throughout.

    `advance` records more: the step *and* the choice of the next token, so greedy search and sampling
    replay one graph per token (the host only draws sampling's random numbers between replays).
    """

    runtime: Any = torch.cuda  # streams and graphs; tests put a CPU recorder here (tests/decode/graph_emulator.py)

    def __init__(self, model: Any, compiled: bool = False):
        self.model = model
        self.compiled = compiled
        self.forward = model.step  # what is recorded: the model's step, or its Inductor-compiled form
        if compiled:
            from seqlab.decode.compiled import cuda_step

            self.forward = cuda_step(model)
        self.first_step_seconds: float | None = None  # compiled: the warm-up step, compiling included
        self.recordings: dict[Any, _Recording] = {}
        self.eager = False  # set when a capture failed
        self.tokens: Tensor | None = None  # static input (N,)

    def __call__(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        if self.eager:
            return self.forward(tokens, state)
        self._set_tokens(tokens)
        return self._run("step", lambda: self.forward(self.tokens, state)[0]), state

    def advance(self, choice: Callable[[Tensor], Tensor], tokens: Tensor, state: Any, plan: Any) -> Tensor:
        """The next tokens: `choice(logits)` after the step on `tokens`, both in one graph per `plan` (steps
        whose choice runs the same kernels on the same tensors share a plan). Returns the static tokens."""
        if self.eager:
            return choice(self.forward(tokens, state)[0])
        self._set_tokens(tokens)
        return self._run(("choice", plan), lambda: self.tokens.copy_(choice(self.forward(self.tokens, state)[0])))

    def _set_tokens(self, tokens: Tensor) -> None:
        if self.tokens is None:  # a beam search's tokens are a strided view: the static input is contiguous,
            self.tokens = tokens.contiguous().clone()  # the one tensor a compiled step ever sees (no recompile)
        elif tokens.data_ptr() != self.tokens.data_ptr():
            self.tokens.copy_(tokens)

    def _run(self, key: Any, fn: Callable[[], Tensor]) -> Tensor:
        recording = self.recordings.get(key)
        if recording is None:  # unrecorded, on a side stream: a real step that also warms up cuBLAS, the
            recording = self.recordings[key] = _Recording(fn)  # allocator and (compiled) compiles the step
            return self._warm_up(fn)
        if recording.graph is None:
            try:
                recording.capture(self.runtime, self.compiled)
            except RuntimeError as e:  # capture runs nothing, so the state is intact: go on eagerly
                warnings.warn(f"CUDA graph capture failed, decoding without it: {str(e).splitlines()[0]}",
                              stacklevel=3)
                self.eager, self.recordings = True, {}
                return fn()
        recording.graph.replay()
        return recording.out

    def _warm_up(self, fn: Callable[[], Tensor]) -> Tensor:
        timed = self.compiled and self.first_step_seconds is None
        started = time.perf_counter()
        cuda = self.runtime
        side = cuda.Stream()
        side.wait_stream(cuda.current_stream())
        with cuda.stream(side):
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - a compiler failure: compiling runs nothing, the state is intact
                if not self.compiled:
                    raise
                warnings.warn(f"compiling the decode step failed, recording it uncompiled: "
                              f"{str(e).splitlines()[0]}", stacklevel=4)
                self.compiled, self.forward = False, self.model.step
                out = fn()
        cuda.current_stream().wait_stream(side)
        if timed:
            side.synchronize()
            self.first_step_seconds = time.perf_counter() - started
        return out


class _Recording:
    """`fn()` — a function of static tensors only — recorded as a CUDA graph; `out` is its static result."""

    def __init__(self, fn: Callable[[], Tensor]):
        self.fn = fn
        self.graph: Any = None  # a torch.cuda.CUDAGraph once recorded
        self.out: Tensor | None = None

    def capture(self, cuda: Any, compiled: bool) -> None:
        graph = cuda.CUDAGraph()
        # a compiled step must not compile while recording (that would run CUDA work): fail instead, go eager
        stance = torch.compiler.set_stance("fail_on_recompile") if compiled else contextlib.nullcontext()
        with stance, cuda.graph(graph):  # records without running; the replay that follows runs it
            self.out = self.fn()
        self.graph = graph
