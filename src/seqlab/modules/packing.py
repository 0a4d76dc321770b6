"""Packed tokens: a padded batch's real tokens only, for the layers that treat each token alone.

A left-padded prefill of prompts of different lengths spends most of its time in matrix products that act
on one token at a time (QKV, the attention's output projection, the MLP), and on padding as much as on
real tokens. Packing runs those products on the N real tokens of the (B, T) batch only:

    x_packed = x.view(B*T, C)[index]               index (N,): the real positions, row-major
    x        = zeros(B*T, C); x[index] = x_packed  (unpack, for attention, which needs the (B, T) layout)

and attention, the one layer that mixes tokens, unpacks its Q, K, V (zeros at padding), runs as before on
(B, T) with the padding mask, and packs its output again. Padding positions' keys and values are then
zeros instead of a pad token's (the mask gives them weight 0 either way), and a real token's numbers are
the padded batch's up to float rounding (matrix kernels of another row count). E.g. 16 prompts of 14-27
tokens: 297 real tokens instead of 16 x 27 = 432 (bench/serve.py's burst; docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Packed:
    """The real tokens of a (B, T) batch: `index` (N,) into its B*T positions, row-major."""

    index: Tensor  # (N,) long
    B: int
    T: int

    @classmethod
    def of(cls, real: Tensor) -> Packed | None:
        """real (B, T) bool -> the packing of its True positions; None when nothing is padding (a plain batch) or
        the batch is not left-padded (a row's last position is padding, e.g. an empty prompt: `last` needs it)."""
        B, T = real.shape
        flat = real.reshape(-1)
        index = flat.nonzero().squeeze(1)  # (N,) a device sync where the batch is on a GPU
        if index.numel() == flat.numel() or not bool(real[:, -1].all()):
            return None
        return cls(index, B, T)

    def pack(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> (N, D), the real positions' rows."""
        return x.reshape(self.B * self.T, -1).index_select(0, self.index)

    def unpack(self, x: Tensor) -> Tensor:
        """x (N, D) -> (B, T, D), zeros at padding."""
        out = x.new_zeros(self.B * self.T, x.shape[-1])
        return out.index_copy_(0, self.index, x).view(self.B, self.T, -1)

    def last(self, x: Tensor) -> Tensor:
        """x (N, D) -> (B, D): each row's last position (real in every row: `of` packs left-padded batches only)."""
        rows = torch.arange(1, self.B + 1, device=self.index.device) * self.T - 1  # (B,) flat position of (b, T-1)
        return x.index_select(0, torch.searchsorted(self.index, rows))
