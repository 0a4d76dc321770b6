"""Batched Monte Carlo rollouts: the prefixes are kept exactly, the rest is sampled from the right state."""

from __future__ import annotations

import pytest
import torch

from seqlab.errors import ConfigError
from seqlab.gan.rollout import RolloutPolicy, complete_prefixes
from seqlab.models.seqgan_generator import LSTMGenerator


class PositionPolicy(torch.nn.Module):
    """A deterministic fake policy: the token at position p (1-based) is always 100 + p.

    Its state counts the tokens read, so a completion written at the wrong position, or a state
    taken from the wrong prefix, shows up as a wrong token.
    """

    vocab_size = 200

    def _logits(self, read: torch.Tensor) -> torch.Tensor:
        logits = torch.full((read.shape[0], self.vocab_size), -1e9)
        logits[torch.arange(read.shape[0]), 100 + read + 1] = 0.0
        return logits

    def start(self, n):
        read = torch.zeros(n, dtype=torch.long)
        return self._logits(read), (read,)

    def step(self, tokens, state):
        read = state[0] + 1
        return self._logits(read), (read,)


def test_prefixes_are_kept_and_the_rest_is_sampled_at_the_right_positions():
    B, T, R = 3, 6, 2
    seqs = torch.randint(0, 50, (B, T))
    out = complete_prefixes(PositionPolicy(), seqs, R)
    assert out.shape == (T - 1, R, B, T)
    for t in range(1, T):
        for r in range(R):
            for b in range(B):
                row = out[t - 1, r, b]
                assert torch.equal(row[:t], seqs[b, :t]), (t, r, b)  # prefix y_1..y_t, not y_1..y_{t-1}
                assert row[t:].tolist() == [100 + p for p in range(t + 1, T + 1)], (t, r, b)


def test_lstm_rollout_continues_from_each_prefix_state():
    """A near-deterministic LSTM (logits scaled up): each completion equals greedy decoding from its prefix."""
    torch.manual_seed(0)
    g = LSTMGenerator(40, 7, emb_dim=8, hidden_dim=8, init_std=0.5)
    with torch.no_grad():
        g.out.weight.mul_(1e4)
        g.out.bias.mul_(1e4)
    seqs = torch.randint(0, 40, (4, 7))
    out = complete_prefixes(g, seqs, 3)
    for t in range(1, 7):
        expected = seqs[:, :t].clone()
        while expected.shape[1] < 7:  # greedy by teacher forcing the prefix so far
            padded = torch.cat([expected, torch.zeros(4, 7 - expected.shape[1], dtype=torch.long)], 1)
            nxt = g(padded)[:, expected.shape[1]].argmax(-1)
            expected = torch.cat([expected, nxt[:, None]], 1)
        for r in range(3):
            assert torch.equal(out[t - 1, r], expected), t


def test_rollout_policy_rates():
    torch.manual_seed(0)
    g = LSTMGenerator(20, 5, emb_dim=4, hidden_dim=4)
    same = RolloutPolicy(g, 0.0)
    assert same.model is g  # r = 0: the current G
    delayed = RolloutPolicy(g, 0.8)
    assert delayed.model is not g
    old = [p.detach().clone() for p in delayed.model.parameters()]
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    delayed.update(g)
    for p_old, p_roll, p_g in zip(old, delayed.model.parameters(), g.parameters(), strict=True):
        torch.testing.assert_close(p_roll, 0.8 * p_old + 0.2 * p_g)
    same.update(g)
    assert same.model is g
    with pytest.raises(ConfigError):
        RolloutPolicy(g, 1.0)


def test_transformer_generator_rollouts_keep_prefixes():
    from seqlab.models.seqgan_generator import TransformerGenerator

    torch.manual_seed(0)
    g = TransformerGenerator(25, 6, n_layer=1, n_head=2, n_embd=8).eval()
    seqs = g.sample(3)
    out = complete_prefixes(g, seqs, 2)
    for t in range(1, 6):
        assert torch.equal(out[t - 1, :, :, :t], seqs[:, :t].expand(2, 3, t))
