"""Monte Carlo rollouts: complete every prefix of a batch of sequences, all at once.

For sequences y [B, T] and R rollouts, the completion (t, r, b) keeps y_b[1..t] and samples
y_{t+1..T} from the rollout policy, for t = 1..T−1. All (T−1)·R·B completions are generated in one
batched decode. Rows are ordered t-major, so the rows that still need a token at decode step k
(those with t ≤ T−k) are always a leading slice of the batch: step k decodes (T−k)·R·B rows, and the
whole rollout costs the same as sampling ((T−1)·R·B)/2 full sequences.

The rollout policy is a delayed copy of G (the SeqGAN paper): after each G step
W_rollout ← r·W_rollout + (1−r)·W_G. With r = 0 it is the current G itself — what the authors' code
effectively ran, since its rollout graph reads G's variables.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from seqlab.modules.categorical import sample_categorical


@torch.no_grad()
def complete_prefixes(policy: nn.Module, seqs: Tensor, num_rollouts: int) -> Tensor:
    """seqs [B, T] -> completions [T−1, R, B, T]; completion [t−1, r, b] starts with seqs[b, :t]."""
    B, T = seqs.shape
    rows = torch.arange(B, device=seqs.device).repeat(num_rollouts)  # (R·B,): row r·B + b is sequence b
    logits, state = policy.start(B)
    prefix_logits, prefix_states = [], []  # after reading y_1..y_t, for t = 1..T−1
    for t in range(1, T):
        logits, state = policy.step(seqs[:, t - 1], state)
        prefix_logits.append(logits[rows])
        prefix_states.append(tuple(s[rows] for s in state))
    logits = torch.cat(prefix_logits)  # ((T−1)·R·B, V), t-major
    state = tuple(torch.cat(parts) for parts in zip(*prefix_states, strict=True))
    out = seqs[rows].repeat(T - 1, 1)  # ((T−1)·R·B, T): the prefixes, overwritten after t below
    prefix_len = torch.arange(1, T, device=seqs.device).repeat_interleave(num_rollouts * B)  # (N,)
    for k in range(1, T):
        active = (T - k) * num_rollouts * B  # rows with t ≤ T−k still need token t+k
        token = sample_categorical(logits[:active])  # (active,)
        out[:active].scatter_(1, (prefix_len[:active] + k - 1)[:, None], token[:, None])
        if k < T - 1:
            next_active = (T - k - 1) * num_rollouts * B
            logits, state = policy.step(token[:next_active], tuple(s[:next_active] for s in state))
    return out.view(T - 1, num_rollouts, B, T)


class RolloutPolicy:
    """The rollout network: G itself (rate 0) or a delayed copy updated by `update(G)` after each G step."""

    def __init__(self, generator: nn.Module, rate: float):
        if not 0.0 <= rate < 1.0:
            from seqlab.errors import ConfigError

            raise ConfigError(f"rollout update rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.model = generator if rate == 0.0 else copy.deepcopy(generator).requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """W_rollout ← r·W_rollout + (1−r)·W_G (nothing to do when the policy is G itself)."""
        if self.model is generator:
            return
        for p_roll, p_gen in zip(self.model.parameters(), generator.parameters(), strict=True):
            p_roll.mul_(self.rate).add_(p_gen.detach(), alpha=1.0 - self.rate)
