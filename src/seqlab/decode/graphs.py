"""The GPU fast path: one decode step recorded as a CUDA graph and replayed for every later token.

A small model's decode step is a few hundred tiny kernels whose launch cost dwarfs the arithmetic;
replaying a captured graph launches them all at once. Capture needs a step with static shapes and
addresses that changes nothing outside its tensors: the model's state is updated in place (a static
KV cache written at a slot *tensor*, positions as tensors) and `reorder_state` keeps buffers in place
when the batch size is unchanged. Models declare it with `capturable_step = True`; seqlab's
TransformerLM state is built that way (see `TransformerState`), so it qualifies.

    step = CapturedStep(model)         # call 1: eager (it is also the warm-up); call 2: capture + replay;
    logits, state = step(tokens, state) # later calls: copy tokens in, replay, read the static logits

With `compiled=True` (`generate(..., compile_step=True)` on a GPU) the step recorded is the one
Inductor compiled (`seqlab.decode.compiled.cuda_step`, with freezing: Triton kernels with the LayerNorms,
bias adds, GELU and residuals fused, attention as fused reductions), so the graph replays fewer kernels. Compiling happens in the
warm-up call; if it fails, the eager step is recorded instead, with a warning.
"""

from __future__ import annotations

import contextlib
import time
import warnings
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
    """`model.step` as a replayed CUDA graph; the state object must stay the same tensors throughout."""

    def __init__(self, model: Any, compiled: bool = False):
        self.model = model
        self.compiled = compiled
        self.forward = model.step  # what is recorded: the model's step, or its Inductor-compiled form
        if compiled:
            from seqlab.decode.compiled import cuda_step

            self.forward = cuda_step(model)
        self.first_step_seconds: float | None = None  # compiled: the warm-up step, compiling included
        self.calls = 0
        self.eager = False  # set when capture failed
        self.graph: torch.cuda.CUDAGraph | None = None
        self.tokens: Tensor | None = None  # static input (N,)
        self.logits: Tensor | None = None  # static output (N, V)

    def __call__(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        self.calls += 1
        if self.eager:
            return self.forward(tokens, state)
        if self.calls == 1:  # unrecorded, on a side stream: a real step that also warms up cuBLAS, the allocator
            # and (compiled) compiles, for the static input the capture will use: a beam search's tokens are a
            # strided view, and a compiled step would recompile for the contiguous copy during the capture
            self.tokens = tokens.contiguous().clone()  # static input (N,)
            started = time.perf_counter()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                try:
                    logits, state = self.forward(self.tokens, state)
                except Exception as e:  # noqa: BLE001 - a compiler failure: compiling runs nothing, the state is intact
                    if not self.compiled:
                        raise
                    warnings.warn(f"compiling the decode step failed, recording it uncompiled: "
                                  f"{str(e).splitlines()[0]}", stacklevel=2)
                    self.compiled, self.forward = False, self.model.step
                    logits, state = self.forward(self.tokens, state)
            torch.cuda.current_stream().wait_stream(side)
            if self.compiled:
                side.synchronize()
                self.first_step_seconds = time.perf_counter() - started
            return logits, state
        self.tokens.copy_(tokens)
        if self.graph is None:
            try:
                self._capture(state)
            except RuntimeError as e:  # capture runs nothing, so the state is intact: go on eagerly
                warnings.warn(f"CUDA graph capture failed, decoding without it: {str(e).splitlines()[0]}",
                              stacklevel=2)
                self.eager, self.graph = True, None
                return self.forward(tokens, state)
        self.graph.replay()
        return self.logits, state

    def _capture(self, state: Any) -> None:
        self.graph = torch.cuda.CUDAGraph()
        # a compiled step must not compile while recording (that would run CUDA work): fail instead, go eager
        stance = torch.compiler.set_stance("fail_on_recompile") if self.compiled else contextlib.nullcontext()
        with stance, torch.cuda.graph(self.graph):  # records without running; the replay that follows runs it
            self.logits, _ = self.forward(self.tokens, state)
