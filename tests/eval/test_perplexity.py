"""Perplexity and a language model's NLL over a token stream in non-overlapping windows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.errors import SeqlabError
from seqlab.eval.perplexity import lm_nll, perplexity_from_nll


class Bigram(torch.nn.Module):
    """logits at t depend on x_t only, so windowing cannot change the NLL."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx)  # (B, T, V)


class PositionAware(Bigram):
    """logits also depend on the position inside the window: each window must start at 0."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], dtype=torch.float32)[None, :, None]  # (1, T, 1)
        return self.table(idx) + 0.3 * pos  # (B, T, V)


def test_perplexity_from_nll():
    assert perplexity_from_nll(10 * math.log(7), 10) == pytest.approx(7.0)
    with pytest.raises(SeqlabError, match="at least one token"):
        perplexity_from_nll(0.0, 0)


@pytest.mark.parametrize("context_length,batch_size", [(4, 1), (5, 2), (7, 3), (100, 8)])
def test_bigram_nll_equals_cross_entropy_of_the_whole_stream(context_length, batch_size):
    torch.manual_seed(0)
    model, ids = Bigram(11), torch.randint(0, 11, (50,))
    expected = F.cross_entropy(model(ids[None, :-1])[0], ids[1:]).item()
    assert lm_nll(model, ids, context_length, batch_size) == pytest.approx(expected, rel=1e-6)


def test_windows_do_not_overlap_and_restart_positions():
    torch.manual_seed(0)
    model, ids = PositionAware(5), torch.randint(0, 5, (23,))
    # 22 targets in windows of 8: [0, 8), [8, 16), [16, 22)
    pieces = [(0, 8), (8, 16), (16, 22)]
    total = sum(F.cross_entropy(model(ids[None, a:b])[0], ids[a + 1:b + 1], reduction="sum").item() for a, b in pieces)
    assert lm_nll(model, ids, 8, batch_size=1) == pytest.approx(total / 22, rel=1e-6)
    assert lm_nll(model, ids.tolist(), 8, batch_size=4) == pytest.approx(total / 22, rel=1e-6)


def test_uniform_model_has_perplexity_vocab_size():
    def uniform(idx):
        return torch.zeros(*idx.shape, 13)  # (B, T, V)

    nll = lm_nll(uniform, torch.arange(40) % 13, 16)
    assert nll == pytest.approx(math.log(13)) and perplexity_from_nll(nll * 39, 39) == pytest.approx(13.0)


def test_training_mode_is_restored_and_short_streams_rejected():
    model = Bigram(3).train()
    lm_nll(model, [0, 1, 2, 1], 2)
    assert model.training
    with pytest.raises(SeqlabError, match="at least 2 tokens"):
        lm_nll(model, [1], 4)


def test_transformer_lm_matches_its_own_loss_over_full_windows():
    """nanoGPT's val loss on the same windows: the mean of the model's cross-entropy per window."""
    from seqlab.models.transformer_lm import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(vocab_size=17, n_layer=1, n_head=2, n_embd=16, context_length=8, dropout=0.1).train()
    ids = torch.randint(0, 17, (3 * 8 + 1,))
    model.eval()
    with torch.no_grad():
        losses = [model(ids[None, s:s + 8], ids[None, s + 1:s + 9])[1].item() for s in (0, 8, 16)]
    model.train()
    assert lm_nll(model, ids, context_length=8, batch_size=2) == pytest.approx(sum(losses) / 3, rel=1e-5)
    assert model.training  # dropout was off while measuring, and is back on
