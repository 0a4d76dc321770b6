"""Perplexity: the exponential of the mean negative log-likelihood per token.

    NLL = -(1/N) sum_t log p(x_t | x_<t),      PPL = exp(NLL)

`lm_nll` measures a language model on a whole token stream the way nanoGPT's val loss is
defined (mean cross-entropy in nats per token), but exactly rather than from random batches:
the stream is cut into non-overlapping windows of the context length, each window predicting
its next tokens, so every token after the first is predicted exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from seqlab.errors import SeqlabError


def perplexity_from_nll(total_nll: float, n_tokens: int) -> float:
    """exp(total_nll / n_tokens): perplexity from a summed NLL (nats) and its token count."""
    if n_tokens <= 0:
        raise SeqlabError("perplexity needs at least one token")
    return math.exp(total_nll / n_tokens)


@torch.inference_mode()
def lm_nll(model: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor | Sequence[int], context_length: int,
           batch_size: int = 8, device: str | torch.device = "cpu") -> float:
    """Mean NLL (nats/token) of `model` on the 1-D stream `ids`, in non-overlapping windows.

    `model(idx)` maps token ids (B, T) to logits (B, T, V). Window k feeds
    ids[kT : kT+T] and predicts ids[kT+1 : kT+T+1]; the last window may be shorter.
    """
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n_targets = ids.numel() - 1
    if n_targets < 1:
        raise SeqlabError(f"the token stream needs at least 2 tokens to score, got {ids.numel()}")
    starts = list(range(0, n_targets, context_length))
    full = [s for s in starts if s + context_length <= n_targets]
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    batches += [[s] for s in starts[len(full):]]  # the shorter tail window, alone
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    total = 0.0
    try:
        for batch in batches:
            length = min(context_length, n_targets - batch[0])
            x = torch.stack([ids[s:s + length] for s in batch]).to(device)  # (B, T)
            y = torch.stack([ids[s + 1:s + 1 + length] for s in batch]).to(device)  # (B, T)
            logits = model(x)  # (B, T, V)
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
    finally:
        if was_training:
            model.train()
    return total / n_targets
