"""Global attention for RNN encoder-decoders: Bahdanau (additive) and Luong (dot, general).

A decoder query h_t (B, Hq) — or a whole sequence of them (B, T, Hq) — attends over the encoder
outputs ("memory") h_s (B, S, Hk); `mask` (B, S) is True at real source tokens, False at padding.

    score(h_t, h_s) = h_t^T h_s                          luong-dot      (Luong et al. 2015, Hq = Hk)
                    = h_t^T W_a h_s                      luong-general
                    = v_a^T tanh(W_q h_t + W_k h_s)      bahdanau       (Bahdanau et al. 2015, "concat"/MLP)

    a_t = softmax_s(score(h_t, h_s))   over real positions only (padding gets exactly 0 weight)
    c_t = sum_s a_t[s] h_s                               context vector (B, Hk)

The key-side projection (W_a h_s, W_k h_s) does not depend on the query, so `keys(memory)` computes it
once per source and decoding steps reuse it (the decoder state carries it; beam search reorders it).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.modules.linear import Linear

AttentionType = Literal["bahdanau", "luong-dot", "luong-general"]
ATTENTION_TYPES: tuple[str, ...] = ("none", "bahdanau", "luong-dot", "luong-general")


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """softmax over the last dim of `scores` (B, T, S), with `mask` (B, S) False positions at exactly 0."""
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return F.softmax(scores.float(), dim=-1).to(scores.dtype)


class GlobalAttention(nn.Module):
    """Score a query against every encoder position and return (context, weights).

    Args:
        kind: bahdanau | luong-dot | luong-general.
        query_size: Hq, the decoder hidden size.
        memory_size: Hk, the encoder output size (must equal Hq for luong-dot).
        attn_size: A, the hidden size of Bahdanau's scoring MLP (default Hq).
    """

    def __init__(self, kind: AttentionType, query_size: int, memory_size: int, attn_size: int | None = None):
        super().__init__()
        if kind not in ATTENTION_TYPES[1:]:
            raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTION_TYPES[1:])}")
        if kind == "luong-dot" and query_size != memory_size:
            raise ValueError(f"luong-dot needs query size == memory size, got {query_size} and {memory_size}")
        self.kind = kind
        if kind == "luong-general":
            self.W_a = Linear(memory_size, query_size, bias=False)
        elif kind == "bahdanau":
            attn_size = attn_size or query_size
            self.W_q = Linear(query_size, attn_size, bias=False)
            self.W_k = Linear(memory_size, attn_size, bias=True)
            self.v_a = Linear(attn_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The query-independent part of the score: (B, S, Hk) -> (B, S, Hq | A); identity for luong-dot."""
        if self.kind == "luong-general":
            return self.W_a(memory)
        if self.kind == "bahdanau":
            return self.W_k(memory)
        return memory

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, T, Hq), keys from `keys()` (B, S, ·) -> scores (B, T, S)."""
        if self.kind == "bahdanau":
            hidden = torch.tanh(self.W_q(query)[:, :, None, :] + keys[:, None, :, :])  # (B, T, S, A)
            return self.v_a(hidden).squeeze(-1)
        return query @ keys.transpose(1, 2)  # (B, T, Hq) @ (B, Hq, S)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor | None = None,
                keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """query (B, Hq) or (B, T, Hq); memory (B, S, Hk); mask (B, S) True = real token.

        Returns context (B, [T,] Hk) and weights (B, [T,] S); pass precomputed `keys` to skip the projection.
        """
        single = query.dim() == 2
        if single:
            query = query[:, None, :]  # (B, 1, Hq)
        if keys is None:
            keys = self.keys(memory)
        weights = masked_softmax(self.score(query, keys), mask)  # (B, T, S)
        context = weights @ memory  # (B, T, Hk)
        if single:
            return context[:, 0], weights[:, 0]
        return context, weights
