"""Losses: the policy gradient is −Σ log G(y_t|y_<t)·Q(t) over batch × T; MLE is the mean cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqlab.gan.losses import mle_loss, policy_gradient_loss
from seqlab.gan.scheduled_sampling import gold_probability, scheduled_sampling_logits
from seqlab.models.seqgan_generator import LSTMGenerator


def test_policy_gradient_loss_and_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, requires_grad=True)
    seqs = torch.randint(0, 5, (3, 4))
    q = torch.rand(3, 4)
    logp = torch.log_softmax(logits, -1).gather(2, seqs[..., None]).squeeze(2)
    loss = policy_gradient_loss(logp, q)
    manual = -sum(q[b, t] * torch.log_softmax(logits[b, t], 0)[seqs[b, t]] for b in range(3) for t in range(4))
    torch.testing.assert_close(loss, manual)
    loss.backward()
    # REINFORCE: d/dlogits = −Q(t)·(onehot(y_t) − softmax)
    expected = -q[..., None] * (F.one_hot(seqs, 5).float() - torch.softmax(logits.detach(), -1))
    torch.testing.assert_close(logits.grad, expected)
    # a sum, not a mean: the batch twice gives twice the loss
    doubled = policy_gradient_loss(torch.cat([logp, logp]), torch.cat([q, q]))
    torch.testing.assert_close(doubled, 2 * loss)
    assert policy_gradient_loss(logp, q.requires_grad_()).grad_fn.next_functions is not None


def test_mle_loss():
    logits, seqs = torch.randn(2, 3, 7), torch.randint(0, 7, (2, 3))
    torch.testing.assert_close(mle_loss(logits, seqs), F.cross_entropy(logits.reshape(6, 7), seqs.reshape(6)))


def test_scheduled_sampling_extremes_and_schedule():
    torch.manual_seed(0)
    g = LSTMGenerator(20, 6, emb_dim=4, hidden_dim=4)
    seqs = torch.randint(0, 20, (5, 6))
    torch.testing.assert_close(scheduled_sampling_logits(g, seqs, 1.0), g(seqs))  # p = 1: teacher forcing
    assert not torch.allclose(scheduled_sampling_logits(g, seqs, 0.0), g(seqs))
    assert gold_probability(0) == 1.0 and gold_probability(100) == 0.8 and gold_probability(900) == 0.0
