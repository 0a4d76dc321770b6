"""Rewards: Q(t) averages rollouts within each (sequence, prefix); Q(T) is D on the full sequence; BLEU-3."""

from __future__ import annotations

import random

import pytest
import torch
from sacrebleu.metrics import BLEU

from seqlab.gan.rewards import NgramBleu, rewards_from_scores, rollout_rewards
from seqlab.gan.rollout import complete_prefixes
from seqlab.models.seqgan_generator import LSTMGenerator


def test_rewards_from_hand_made_scores():
    # score of completion (t, r, b) = 100 t + 10 r + b ; full sequence b scores 1000 + b
    B, T, R = 3, 4, 2
    scores = torch.tensor([100.0 * t + 10 * r + b for t in range(1, T) for r in range(R) for b in range(B)]
                          + [1000.0 + b for b in range(B)])
    q = rewards_from_scores(scores, B, T, R)
    expected = torch.tensor([[100.0 * t + 5 + b for t in range(1, T)] + [1000.0 + b] for b in range(B)])
    torch.testing.assert_close(q, expected)


def fake_discriminator(seqs: torch.Tensor) -> torch.Tensor:
    """Deterministic, depends on every token and its position: mixing sequences or prefixes changes it."""
    weights = torch.arange(1, seqs.shape[1] + 1, dtype=torch.float32)
    return torch.sin((seqs.float() * weights).sum(1) / 7.0)


def test_rollout_rewards_against_a_naive_loop():
    torch.manual_seed(0)
    g = LSTMGenerator(30, 6, emb_dim=8, hidden_dim=8, init_std=0.5)
    seqs = g.sample(5)
    B, T, R = 5, 6, 4
    torch.manual_seed(1)
    q = rollout_rewards(g, fake_discriminator, seqs, R)
    torch.manual_seed(1)
    completions = complete_prefixes(g, seqs, R)  # same draws
    naive = torch.zeros(B, T)
    for b in range(B):
        for t in range(1, T):
            rows = []
            for r in range(R):
                row = completions[t - 1, r, b]
                assert torch.equal(row[:t], seqs[b, :t])
                rows.append(fake_discriminator(row[None])[0])
            naive[b, t - 1] = torch.stack(rows).mean()
        naive[b, T - 1] = fake_discriminator(seqs[b:b + 1])[0]  # t = T: D on the full sequence
    torch.testing.assert_close(q, naive)
    # the known reshape bug, (B, T-1, R) instead of (T-1, R, B), gives other numbers
    scores = fake_discriminator(torch.cat([completions.reshape(-1, T), seqs]))
    wrong = scores[:-B].view(B, T - 1, R).mean(2)
    assert not torch.allclose(wrong, q[:, :-1])


def test_bleu3_matches_sacrebleu():
    rng = random.Random(0)
    refs = [[rng.randrange(6) for _ in range(8)] for _ in range(12)]
    hyps = [[rng.randrange(6) for _ in range(8)] for _ in range(30)] + [refs[0], [7] * 8]
    bleu = NgramBleu(torch.tensor(refs), vocab_size=8, max_n=3)
    got = bleu(torch.tensor(hyps))
    scorer = BLEU(max_ngram_order=3, smooth_method="none", tokenize="none", effective_order=False)
    ref_text = [" ".join(map(str, r)) for r in refs]
    for h, g in zip(hyps, got.tolist(), strict=True):
        expected = scorer.sentence_score(" ".join(map(str, h)), ref_text).score / 100
        assert g == pytest.approx(expected, abs=1e-5)
    assert got[-2] == pytest.approx(1.0) and got[-1] == 0.0
