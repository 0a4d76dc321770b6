"""Perplexity: the exponential of the mean negative log-likelihood per token.

    NLL = -(1/N) sum_t log p(x_t | x_<t),      PPL = exp(NLL)

`lm_nll` measures a language model on a whole token stream the way nanoGPT's val loss is
defined (mean cross-entropy in nats per token), but exactly rather than from random batches:
the stream is cut into non-overlapping windows of the context length, each window predicting
its next tokens, so every token after the first is predicted exactly once. `pairs_nll` is the
teacher-forced NLL of an encoder-decoder on (source, target) pairs, <eos> included.
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


@torch.inference_mode()
def pairs_nll(model: Callable[..., torch.Tensor], pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
              bos_id: int, eos_id: int, batch_size: int = 32, device: str | torch.device = "cpu") -> float:
    """Mean teacher-forced NLL (nats/token) of an encoder-decoder on (source ids, target ids) pairs.

    Each target is scored as y_1 .. y_n <eos> given <bos> y_1 .. y_n and the source:
    NLL = -(1/N) sum_pairs sum_t log p(y_t | y_<t, x), N counting every target token and each <eos>.
    `model(src (B, S), src_mask (B, S), tgt_in (B, T))` returns logits (B, T, V); batches are right-padded.
    """
    if not pairs:
        raise SeqlabError("perplexity needs at least one (source, target) pair")
    total, n_tokens = 0.0, 0
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            S, T = max(1, max(len(s) for s, _ in batch)), max(len(t) for _, t in batch) + 1
            src = torch.full((len(batch), S), pad_id, dtype=torch.long)
            tgt_in = torch.full((len(batch), T), pad_id, dtype=torch.long)
            targets = torch.full((len(batch), T), -100, dtype=torch.long)  # -100: ignored padding
            for b, (s, t) in enumerate(batch):
                src[b, :len(s)] = torch.tensor(list(s), dtype=torch.long)
                tgt_in[b, :len(t) + 1] = torch.tensor([bos_id, *t], dtype=torch.long)
                targets[b, :len(t) + 1] = torch.tensor([*t, eos_id], dtype=torch.long)
            src_mask = torch.arange(S)[None, :] < torch.tensor([max(1, len(s)) for s, _ in batch])[:, None]
            logits = model(src.to(device), src_mask.to(device), tgt_in.to(device))  # (B, T, V)
            total += F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(), ignore_index=-100,
                                     reduction="sum").item()
            n_tokens += int((targets != -100).sum())
    finally:
        if was_training:
            model.train()
    return total / n_tokens
