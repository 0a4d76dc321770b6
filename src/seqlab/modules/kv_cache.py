"""A static key/value cache: preallocated once per generation, written in place at the current slots.

Every layer owns two buffers of shape (B, nh, S, hs), S = prompt length + max_new_tokens, allocated
at the first write (so they take the dtype of the keys, e.g. bf16 under autocast). Writes use a
slot index *tensor* (`index_copy_`), never a Python int, so a decode step has static shapes and
addresses and can be captured in a CUDA graph. Unwritten slots hold zeros; the attention mask,
kept by the model, says which slots are real.

Continuous batching (seqlab.decode.batching) adds rows to a running cache and drops them: `merge` puts
another cache's rows after this one's, `reorder` with fewer rows drops some, `shift` moves every row's
slots. A merged cache keeps its rows at the front of *row storage*, buffers (R, nh, S, hs) with room
for R >= B rows, so that a request joining or leaving copies its own rows, not the whole batch.
Slots outside a row's mask may then hold another row's old keys: finite numbers that get weight 0.
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
        self.storage: list[Tensor] | None = None  # merged caches: 2 * n_layer buffers (R, nh, S, hs), keys then values

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
        if self.storage is not None and index.numel() <= self.storage[0].size(0):
            return self._reorder_stored(index, filled)
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

    def merge(self, other: StaticKVCache, shift: int, other_shift: int, filled: int, other_filled: int,
              max_len: int) -> StaticKVCache:
        """This cache's rows, then `other`'s, in a cache of `max_len` slots: this cache's slots [0, filled)
        move to [shift, shift + filled), `other`'s [0, other_filled) to [other_shift, other_shift + other_filled);
        the slots before them become zeros. Reuses this cache's row storage when it has room (this cache
        is then consumed), else grows it to the next power of two rows."""
        n, B, B_other = len(self.keys), self.rows, other.rows
        storage = self.storage or self.keys + self.values
        if storage[0].size(0) < B + B_other or storage[0].size(2) != max_len:
            storage = _grown(storage, B, filled, 1 << (B + B_other - 1).bit_length(), max_len)
        out = StaticKVCache(n, max_len)
        out.storage = storage
        out.keys, out.values = [b[:B] for b in storage[:n]], [b[:B] for b in storage[n:]]
        out.shift(shift, filled)
        for buffer, source in zip(storage, other.keys + other.values, strict=True):
            rows = buffer[B:B + B_other]  # (B_other, nh, S, hs)
            rows[:, :, :other_shift] = 0
            rows[:, :, other_shift:other_shift + other_filled] = source[:, :, :other_filled]
        out.keys, out.values = [b[:B + B_other] for b in storage[:n]], [b[:B + B_other] for b in storage[n:]]
        return out

    def with_room(self, rows: int, max_len: int, filled: int) -> StaticKVCache:
        """This cache in row storage of at least `rows` rows and exactly `max_len` slots: itself when its storage
        has them, else a copy of its slots [0, filled) into new storage (this cache is then consumed)."""
        if self.storage is not None and self.storage[0].size(0) >= rows and self.storage[0].size(2) == max_len:
            return self
        B, n = self.rows, len(self.keys)
        out = StaticKVCache(n, max_len)
        out.storage = _grown(self.storage or self.keys + self.values, B, filled, max(rows, B), max_len)
        out.keys, out.values = [b[:B] for b in out.storage[:n]], [b[:B] for b in out.storage[n:]]
        return out

    def shift(self, by: int, filled: int) -> None:
        """Move every row's slots [0, filled) by `by` slots, in place: right when by > 0 (the slots before
        become zeros), left when by < 0 (the first -by slots are dropped, the freed slots become zeros)."""
        if by == 0:
            return
        for buffer in self.keys + self.values:
            if by > 0:
                buffer[:, :, by:by + filled] = buffer[:, :, :filled].clone()
                buffer[:, :, :by] = 0
            else:
                buffer[:, :, :filled + by] = buffer[:, :, -by:filled].clone()
                buffer[:, :, filled + by:filled] = 0

    def _reorder_stored(self, index: Tensor, filled: int | None) -> StaticKVCache:
        """Rows `index` (B' <= R) into the first B' rows of the row storage; only rows that move are copied
        (continuous batching drops a row by moving the last one into its place)."""
        S = self.max_len if filled is None else filled
        moved = (index != torch.arange(index.numel(), device=index.device)).nonzero()[:, 0]  # (M,)
        if moved.numel():
            for buffer in self.storage:
                written = buffer[:, :, :S]  # (R, nh, S', hs)
                written.index_copy_(0, moved, written.index_select(0, index[moved]))
        out = StaticKVCache(len(self.keys), self.max_len)
        n, B = len(self.keys), index.numel()
        out.storage = self.storage
        out.keys, out.values = [b[:B] for b in self.storage[:n]], [b[:B] for b in self.storage[n:]]
        return out

    @property
    def rows(self) -> int:
        return self.keys[0].size(0)

    @property
    def device(self) -> torch.device:
        return self.keys[0].device if self.keys[0] is not None else torch.device("cpu")


def _grown(buffers: list[Tensor], B: int, filled: int, rows: int, max_len: int) -> list[Tensor]:
    """New row storage (rows, nh, max_len, hs) per buffer, holding the buffers' first B rows' slots [0, filled)."""
    grown = [buffer.new_zeros(rows, buffer.size(1), max_len, buffer.size(3)) for buffer in buffers]
    for new, old in zip(grown, buffers, strict=True):
        new[:B, :, :filled] = old[:B, :, :filled]
    return grown


def reorder_rows(t: Tensor, index: Tensor) -> Tensor:
    """t[index] along dim 0, copied back into `t` itself when the batch size is unchanged."""
    index = index.to(t.device)
    picked = t.index_select(0, index)
    if picked.shape == t.shape:
        return t.copy_(picked)
    return picked
