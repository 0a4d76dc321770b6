"""A static key/value cache: preallocated once per generation, written in place at the current slots.

Every layer owns two buffers of shape (B, nh, S, hs), S = prompt length + max_new_tokens, allocated
at the first write (so they take the dtype of the keys, e.g. bf16 under autocast). Writes use a
slot index *tensor* (`index_copy_`), never a Python int, so a decode step has static shapes and
addresses and can be captured in a CUDA graph. Unwritten slots hold zeros; the attention mask,
kept by the model, says which slots are real.
"""

from __future__ import annotations

import torch
from torch import Tensor


class StaticKVCache:
    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.keys: list[Tensor | None] = [None] * n_layer  # each (B, nh, S, hs)
        self.values: list[Tensor | None] = [None] * n_layer
        self.spare: list[Tensor] | None = None  # 2 * n_layer buffers like keys / values (CPU beam search)

    @classmethod
    def from_buffers(cls, keys: list[Tensor], values: list[Tensor]) -> StaticKVCache:
        """A cache over existing per-layer buffers (B, nh, S, hs), e.g. the inputs of a compiled step."""
        cache = cls(len(keys), keys[0].shape[2])
        cache.keys, cache.values = list(keys), list(values)
        return cache

    def write(self, layer: int, k: Tensor, v: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, nh, T, hs) at `slots` (T,) of layer `layer`; return the whole (B, nh, S, hs) buffers."""
        if self.keys[layer] is None:
            B, nh, _, hs = k.shape
            self.keys[layer] = k.new_zeros(B, nh, self.max_len, hs)
            self.values[layer] = v.new_zeros(B, nh, self.max_len, hs)
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(2, slots, k.to(keys.dtype))
        values.index_copy_(2, slots, v.to(values.dtype))
        return keys, values

    def reorder(self, index: Tensor, filled: int | None = None) -> StaticKVCache:
        """Rows `index` (B',) of the batch: in place when B' == B (buffers keep their addresses, which a
        captured CUDA graph needs), else new buffers. With `filled` (the slots written so far, known
        without a device sync on CPU) and B' == B, only those slots are gathered, into a second set of
        buffers that is then swapped in: beam search reorders every step, and the unwritten slots are
        zeros in every row."""
        out = StaticKVCache(len(self.keys), self.max_len)
        index = index.to(self.device)
        if filled is not None and self.keys[0] is not None and index.numel() == self.keys[0].size(0):
            # gather the filled slots straight into spare buffers and swap them in: one pass over the
            # cache and no temporary (gathering into a new tensor and copying it back costs more)
            buffers = self.keys + self.values
            spare = self.spare or [b.new_zeros(b.shape) for b in buffers]
            for src, dst in zip(buffers, spare, strict=True):
                torch.index_select(src[:, :, :filled], 0, index, out=dst[:, :, :filled])
            n = len(self.keys)
            out.keys, out.values, out.spare = spare[:n], spare[n:], buffers
            return out
        out.keys = [None if k is None else reorder_rows(k, index) for k in self.keys]
        out.values = [None if v is None else reorder_rows(v, index) for v in self.values]
        return out

    @property
    def device(self) -> torch.device:
        return self.keys[0].device if self.keys[0] is not None else torch.device("cpu")


def reorder_rows(t: Tensor, index: Tensor) -> Tensor:
    """t[index] along dim 0, copied back into `t` itself when the batch size is unchanged."""
    index = index.to(t.device)
    picked = t.index_select(0, index)
    if picked.shape == t.shape:
        return t.copy_(picked)
    return picked
