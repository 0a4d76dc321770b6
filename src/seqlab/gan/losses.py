"""Generator losses for SeqGAN and its baselines.

    MLE:              L = −(1/(B·T)) Σ_b Σ_t log G(y_t | y_<t)
    policy gradient:  L = −Σ_b Σ_t log G(y_t | y_<t) · Q(t)        (summed over batch × T, as the authors' code)

The discriminator's loss (cross-entropy + the output layer's L2 term) is `Discriminator.loss`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def mle_loss(logits: Tensor, seqs: Tensor) -> Tensor:
    """Mean token cross-entropy: logits [B, T, V], seqs [B, T]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), seqs.reshape(-1))


def policy_gradient_loss(log_probs: Tensor, rewards: Tensor) -> Tensor:
    """−Σ log G(y_t | y_<t) · Q(t): log_probs, rewards [B, T] (rewards carry no gradient)."""
    return -(log_probs * rewards.detach()).sum()
