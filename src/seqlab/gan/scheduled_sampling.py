"""Scheduled sampling (Bengio et al. 2015), the SeqGAN paper's "SS" baseline.

Teacher forcing where each input token is the gold one with probability p and otherwise a token
sampled from G's own prediction at the previous step:

    x_t = y_{t−1}            with probability p
        = ŷ_{t−1} ~ G(· | x_<t)   otherwise

The authors' schedule: p starts at 1.0 and falls by 0.002 per epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.modules.categorical import sample_categorical


def scheduled_sampling_logits(generator: nn.Module, seqs: Tensor, p_gold: float) -> Tensor:
    """Logits [B, T, V] for seqs [B, T], each input gold with probability p_gold, else G's own sample."""
    logits, state = generator.start(seqs.shape[0])
    out = [logits]
    for t in range(1, seqs.shape[1]):
        sampled = sample_categorical(logits.detach())  # (B,)
        gold = torch.rand(seqs.shape[0], device=seqs.device) < p_gold
        logits, state = generator.step(torch.where(gold, seqs[:, t - 1], sampled), state)
        out.append(logits)
    return torch.stack(out, dim=1)  # (B, T, V)


def gold_probability(epoch: int, start: float = 1.0, decay: float = 0.002) -> float:
    """p at `epoch` (0-based): start − decay·epoch, never below 0."""
    return max(0.0, start - decay * epoch)
