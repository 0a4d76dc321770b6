"""A static key/value cache: preallocated once per generation, written in place at the current slots.

Every layer owns two buffers of shape (B, nh, S, hs), S = prompt length + max_new_tokens, allocated
at the first write (so they take the dtype of the keys, e.g. bf16 under autocast). Writes use a
slot index *tensor* (`index_copy_`), never a Python int, so a decode step has static shapes and
addresses and can be captured in a CUDA graph. Unwritten slots hold zeros; the attention mask,
kept by the model, says which slots are real.
"""

from __future__ import annotations

from torch import Tensor


class StaticKVCache:
    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.keys: list[Tensor | None] = [None] * n_layer  # each (B, nh, S, hs)
        self.values: list[Tensor | None] = [None] * n_layer

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
        """Rows `index` (B',) of the batch: in place when B' == B (buffers keep their addresses), else new
        buffers. `filled` (the slots written so far, when known without a device sync) limits the in-place
        copy to them: beam search reorders every step, and the unwritten slots are zeros in every row."""
        out = StaticKVCache(len(self.keys), self.max_len)
        out.keys = [None if k is None else reorder_rows(k, index, filled) for k in self.keys]
        out.values = [None if v is None else reorder_rows(v, index, filled) for v in self.values]
        return out


def reorder_rows(t: Tensor, index: Tensor, filled: int | None = None) -> Tensor:
    """t[index] along dim 0, copied back into `t` itself when the batch size is unchanged (then only the
    first `filled` entries of dim 2 when given: the cache's slots)."""
    index = index.to(t.device)
    if index.numel() == t.size(0) and filled is not None:
        part = t[:, :, :filled]
        part.copy_(part.index_select(0, index))
        return t
    picked = t.index_select(0, index)
    if picked.shape == t.shape:
        return t.copy_(picked)
    return picked
