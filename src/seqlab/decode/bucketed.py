"""The continuous batch's decode step, compiled at a few row counts: B running rows step as R = 2^k >= B.

A compiled step (seqlab.decode.compiled) is one graph per batch size, and a continuous batch changes size
whenever a request joins or leaves. Run as the next power of two, the B rows need log2(max_batch) + 1
graphs — 1, 2, 4, 8, 16 rows for a batch of 16 — each compiled once, before serving (`warm_up`), then
replayed without Python between its kernels, as `generate --compile` replays its one graph:

    step = BucketedStep(model, max_batch=16)
    step.warm_up()                        # compiles every size (tens of seconds each), e.g. at server start
    logits, state = step(tokens, state)   # tokens (B,), B <= max_batch: model.step's contract

The R - B padding rows cost what real rows cost (at most B - 1 of them, e.g. 9 rows step as 16) and
give nothing: their logits are dropped. Their inputs are token 0 at position 0, and a mask in which only
the slot this step writes is valid, so their attention is finite whatever the cache holds in their rows:
the rows of the KV cache's row storage beyond B (seqlab.modules.kv_cache), which hold the keys of rows
that left, or zeros. The running rows' numbers are those of the eager step up to float rounding, as for
`generate --compile` (~1e-6 on the logits).

The graph takes the cache of the model's whole context (`cache_length`), as the compiled `generate` does:
`fit` moves a state with a shorter cache (a first prefill) into row storage of S = context slots, with
room for every row of the largest size, so that a join never reallocates it. CPU only (Inductor's C++
backend); where the step cannot be compiled (`can_compile` is false, or compiling fails) the rows step
eagerly, unpadded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqlab.decode.compiled import CompiledStep, cache_length, can_compile
from seqlab.models.transformer_lm import TransformerState
from seqlab.modules.kv_cache import StaticKVCache


def row_counts(max_batch: int) -> list[int]:
    """The sizes the step is compiled at: 1, 2, 4, ... up to the first >= max_batch."""
    sizes = [1]
    while sizes[-1] < max_batch:
        sizes.append(sizes[-1] * 2)
    return sizes


class BucketedStep:
    """`model.step` for a continuous batch through compiled graphs of 2^k rows; see the module docstring."""

    def __init__(self, model: Any, max_batch: int):
        self.model, self.max_batch = model, max_batch
        self.sizes = row_counts(max_batch)
        self.compiled = can_compile(model) and all(p.device.type == "cpu" for p in model.parameters())
        self.slots = cache_length(model) if self.compiled else 0
        self._steps: dict[int, CompiledStep] = {}
        rows = self.sizes[-1]
        self._tokens = torch.zeros(rows, dtype=torch.long)  # (R,) the step's inputs, padding rows included
        self._position = torch.zeros(rows, dtype=torch.long)
        self._key_valid = torch.zeros(rows, self.slots, dtype=torch.bool)  # (R, S)

    def rows_for(self, B: int) -> int:
        """The compiled size that B rows step as."""
        return next(size for size in self.sizes if size >= B)

    def __call__(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """tokens (B,) -> logits (B, V); updates `state` in place (after `fit`, which it calls)."""
        if not self.compiled:
            return self.model.step(tokens, state)
        B = tokens.numel()
        R = self.rows_for(B)
        self.fit(state)
        n = len(state.cache.keys)
        storage = state.cache.storage
        padded_tokens, position, key_valid = self._tokens[:R], self._position[:R], self._key_valid[:R]
        padded_tokens[:B] = tokens
        padded_tokens[B:] = 0
        position[:B] = state.position
        position[B:] = 0
        key_valid[:B] = state.key_valid
        key_valid[B:] = False  # the step marks its own slot valid in every row
        padded = TransformerState(StaticKVCache.from_buffers([b[:R] for b in storage[:n]], [b[:R] for b in storage[n:]]),
                                  key_valid, state.slot, position)
        logits, _ = self._step(R)(padded_tokens, padded)  # (R, V); writes slot's keys, moves the slot on
        state.key_valid.copy_(key_valid[:B])
        state.position.add_(1)
        return logits[:B], state

    def fit(self, state: Any) -> None:
        """Give the state row storage of the whole context with room for the largest size (in place)."""
        filled = int(state.slot)
        cache = state.cache.with_room(self.sizes[-1], self.slots, filled)
        if cache is state.cache:
            return
        key_valid = state.key_valid.new_zeros(state.key_valid.size(0), self.slots)  # (B, S)
        key_valid[:, :filled] = state.key_valid[:, :filled]
        state.cache, state.key_valid = cache, key_valid

    def warm_up(self) -> None:
        """Compile the graph of every size now (each first call compiles; the second replays it)."""
        if not self.compiled:
            return
        for R in self.sizes:
            ids = torch.zeros(R, 2, dtype=torch.long)
            with torch.no_grad():
                _, state = self.model.prefill(ids, None, 2)
                tokens = torch.zeros(R, dtype=torch.long)
                for _ in range(2):
                    self(tokens, state)

    def _step(self, R: int) -> CompiledStep:
        step = self._steps.get(R)
        if step is None:
            step = self._steps[R] = CompiledStep(self.model)
        return step

    @property
    def eager(self) -> bool:
        """Whether compiling failed (the rows then step eagerly)."""
        return any(step.eager for step in self._steps.values())
