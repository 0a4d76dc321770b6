"""Rotary position embedding (RoFormer; the "rotate half" layout of GPT-NeoX and Llama).

For a head vector x of size d and position p, the pairs (x_i, x_{i+d/2}) are rotated by p·θ_i,

    θ_i = base^(-2i/d),  i = 0 .. d/2-1
    rope(x, p) = x ⊙ cos(p θ) + rotate_half(x) ⊙ sin(p θ),   rotate_half(x) = (-x_{d/2:}, x_{:d/2})

so q·k depends only on the distance between the two positions. Angles are computed from the
position ids on the fly (no table to outgrow; positions may differ per row, e.g. left padding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.errors import SeqlabError


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise SeqlabError(f"rotary positions need an even head size (n_embd / n_head), got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hs/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions (B, T) or (T,) -> cos, sin of shape (B or 1, 1, T, hs), float32."""
        if positions.dim() == 1:
            positions = positions.unsqueeze(0)
        angles = positions.float().unsqueeze(-1) * self.inv_freq  # (B, T, hs/2)
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # (B, 1, T, hs)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, nh, T, hs) by the angles whose cos / sin are given (computed in float32)."""
    half = x.shape[-1] // 2
    xf = x.float()
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)
