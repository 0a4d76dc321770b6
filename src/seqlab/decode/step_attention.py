"""The attention of the compiled decode step (`seqlab.decode.compiled`), written for Inductor.

A decode step has one query per row. `TransformerLM.step(..., attention=step_attention)` uses this
in place of `F.scaled_dot_product_attention`; the compiled step passes it, eager decoding does not.

    a = softmax_s(q k_s / sqrt(hs), masked),   y = sum_s a_s v_s

It computes what scaled_dot_product_attention computes, written as reductions over the cache that
Inductor fuses into its loops: the CPU flash kernel, called once per layer, is built for many queries
and costs more than the fused loops for a single one.
"""

from __future__ import annotations

import torch
from torch import Tensor

VALUE_CHUNK = 16  # features per reduction of step_attention's value sum: one AVX-512 vector of fp32


def step_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """One query per row: q (B, nh, 1, hs), k, v (B, nh, S, hs), mask (B, 1, 1, S) bool -> (B, nh, 1, hs).

    The value sum is one reduction per `VALUE_CHUNK` features of hs: Inductor runs them in one loop
    over s that reads each cached row once, in order, where one reduction over all hs would sweep the
    rows once per vector of features. Same sums, same order, same result.
    """
    scores = (q * k).sum(-1) * q.shape[-1] ** -0.5  # (B, nh, S)
    a = scores.masked_fill(~mask[:, :, 0], float("-inf")).softmax(-1).unsqueeze(-1)  # (B, nh, S, 1)
    return torch.cat([(a * part).sum(-2, keepdim=True) for part in v.split(VALUE_CHUNK, dim=-1)], -1)  # (B, nh, 1, hs)
