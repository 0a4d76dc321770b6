"""Rewards for SeqGAN's policy gradient: Monte Carlo estimates Q(t) from one batched scoring pass.

    Q(t) = (1/R) Σ_r score(MC_r(y_1..t))   for t = 1..T−1,      Q(T) = score(y_1..T)

score is D's probability of "real" (SeqGAN) or BLEU-3 against the real data (PG-BLEU). The
completions [T−1, R, B, T] of `complete_prefixes` and the B full sequences are scored in one call,
then the scores are averaged over R *within* each (t, b) — the reshape/transpose that some
implementations got wrong (averaging across sequences instead).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from seqlab.gan.rollout import complete_prefixes

ScoreFn = Callable[[Tensor], Tensor]  # sequences [N, T] -> scores [N]


@torch.no_grad()
def rollout_rewards(policy: nn.Module, score: ScoreFn, seqs: Tensor, num_rollouts: int) -> Tensor:
    """Q [B, T] for sequences seqs [B, T] (see the module docstring)."""
    B, T = seqs.shape
    completions = complete_prefixes(policy, seqs, num_rollouts)  # (T−1, R, B, T)
    scores = score(torch.cat([completions.reshape(-1, T), seqs]))  # ((T−1)·R·B + B,)
    return rewards_from_scores(scores, B, T, num_rollouts)


def rewards_from_scores(scores: Tensor, batch: int, seq_len: int, num_rollouts: int) -> Tensor:
    """Scores of [completions (T−1, R, B) flattened; full sequences (B)] -> Q [B, T]."""
    prefix = scores[: -batch].view(seq_len - 1, num_rollouts, batch).mean(dim=1)  # (T−1, B)
    return torch.cat([prefix.T, scores[-batch:, None]], dim=1)  # (B, T)


def discriminator_score(discriminator: nn.Module, chunk: int = 1 << 16) -> ScoreFn:
    """D's probability of "real", with dropout off (in chunks of `chunk` rows, to bound memory)."""

    @torch.no_grad()
    def score(seqs: Tensor) -> Tensor:
        was_training = discriminator.training
        discriminator.eval()
        out = torch.cat([discriminator.prob_real(seqs[s:s + chunk]) for s in range(0, seqs.shape[0], chunk)])
        discriminator.train(was_training)
        return out

    return score


class NgramBleu:
    """Sentence BLEU-n (uniform weights, no smoothing) of token sequences against ONE fixed reference set.

        BLEU = BP · exp((1/n) Σ_k log p_k),   p_k = Σ_g min(c_hyp(g), max_ref c_ref(g)) / Σ_g c_hyp(g)

    The references' clipped counts max_ref c_ref(g) are computed once, in tensors (n-grams hashed to
    integers, sorted; lookups by binary search), so scoring thousands of rollouts against 10,000
    references is a few vectorised ops. Any p_k = 0 gives 0 (as NLTK and sacrebleu without smoothing).
    All sequences have the same length T, so the brevity penalty BP is 1.
    """

    def __init__(self, references: Tensor, vocab_size: int, max_n: int = 3):
        if vocab_size ** max_n >= 2**62:
            from seqlab.errors import ConfigError

            raise ConfigError(f"BLEU-{max_n} n-gram ids overflow for a vocabulary of {vocab_size}")
        self.vocab_size, self.max_n = vocab_size, max_n
        self.tables = [self._reference_counts(references, n) for n in range(1, max_n + 1)]

    def _ngram_ids(self, seqs: Tensor, n: int) -> Tensor:
        """seqs [N, T] -> n-gram ids [N, T−n+1] (base-V digits of the n tokens)."""
        ids = torch.zeros_like(seqs[:, : seqs.shape[1] - n + 1])
        for k in range(n):
            ids = ids * self.vocab_size + seqs[:, k: seqs.shape[1] - n + 1 + k]
        return ids

    def _reference_counts(self, references: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """Sorted distinct n-gram ids of the references and each one's max count in any one reference."""
        ids = self._ngram_ids(references, n)
        count, first = _row_counts(ids)
        keys, inverse = torch.unique(ids[first], return_inverse=True)
        max_count = torch.zeros_like(keys).scatter_reduce(0, inverse, count[first], "amax")
        return keys, max_count

    def __call__(self, hyps: Tensor) -> Tensor:
        """BLEU in [0, 1] of each row of hyps [M, T] -> [M]."""
        log_p = torch.zeros(hyps.shape[0], device=hyps.device)
        for n, (keys, max_count) in enumerate(self.tables, start=1):
            ids = self._ngram_ids(hyps, n)  # (M, L)
            count, first = _row_counts(ids)
            keys, max_count = keys.to(ids.device), max_count.to(ids.device)
            pos = torch.searchsorted(keys, ids).clamp_max(keys.numel() - 1)
            ref = torch.where(keys[pos] == ids, max_count[pos], 0)
            clipped = (torch.minimum(count, ref) * first).sum(dim=1)  # (M,)
            log_p = log_p + torch.log(clipped.float() / ids.shape[1])
        return torch.exp(log_p / self.max_n)  # log 0 = −inf -> BLEU 0


def _row_counts(ids: Tensor) -> tuple[Tensor, Tensor]:
    """For ids [N, L]: how often each position's id occurs in its row, and whether it is the first occurrence."""
    eq = ids[:, :, None] == ids[:, None, :]  # (N, L, L)
    earlier = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).tril(-1)
    return eq.sum(dim=2), ~(eq & earlier).any(dim=2)
