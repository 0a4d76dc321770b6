"""SeqGAN's CNN discriminator: the protocol's sizes, a reference forward with conv2d as in TensorFlow, the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.errors import ConfigError
from seqlab.models.discriminator import NUM_FILTERS, WIDTHS, Discriminator
from seqlab.train.seqgan import d_optimizer


def test_protocol_sizes():
    d = Discriminator(5000, 20)
    assert list(WIDTHS) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20]
    assert sum(NUM_FILTERS) == 1720 and len(d.convs) == 12
    assert [c.kernel_size[0] for c in d.convs] == list(WIDTHS)
    assert d.embedding.embedding_dim == 64 and d.dropout.p == pytest.approx(0.25)  # keep-prob 0.75
    assert d.out.weight.shape == (2, 1720)
    opt = d_optimizer(d, 1e-4, torch.device("cpu"))
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-4
    assert opt.param_groups[0]["weight_decay"] == 0


def _reference_forward(d: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """The authors' graph: conv2d of [w, emb] filters over the [T, emb] image, max-pool, highway, linear."""
    emb = d.embedding.weight[x].unsqueeze(1)  # (B, 1, T, E)
    pooled = []
    for conv in d.convs:
        w = conv.weight.permute(0, 2, 1).unsqueeze(1)  # (n, 1, width, E)
        h = F.relu(F.conv2d(emb, w, conv.bias)).squeeze(3)  # (B, n, T - width + 1)
        pooled.append(h.max(dim=2).values)
    f = torch.cat(pooled, 1)
    t = torch.sigmoid(f @ d.highway_gate.weight.T + d.highway_gate.bias)
    y = t * F.relu(f @ d.highway.weight.T + d.highway.bias) + (1 - t) * f
    return y @ d.out.weight.T + d.out.bias


def test_forward_matches_a_conv2d_reference():
    torch.manual_seed(0)
    d = Discriminator(50, 20).eval()
    x = torch.randint(0, 50, (5, 20))
    torch.testing.assert_close(d(x), _reference_forward(d, x), atol=1e-4, rtol=1e-4)
    assert torch.allclose(d.prob_real(x), torch.softmax(d(x), 1)[:, 1])


def test_loss_adds_the_output_layer_l2_term():
    torch.manual_seed(0)
    d = Discriminator(50, 20).eval()
    x, y = torch.randint(0, 50, (6, 20)), torch.tensor([0, 1, 1, 0, 1, 0])
    W, b = d.out.weight, d.out.bias
    expected = F.cross_entropy(d(x), y) + 0.2 * (0.5 * (W**2).sum() + 0.5 * (b**2).sum())
    torch.testing.assert_close(d.loss(x, y), expected)
    # only the output layer is penalised: the highway's weights get no L2 gradient with zero CE weight
    d.loss(x, y).backward()
    assert d.out.weight.grad is not None


def test_dropout_only_in_training():
    torch.manual_seed(0)
    d = Discriminator(50, 20)
    x = torch.randint(0, 50, (4, 20))
    d.eval()
    assert torch.equal(d(x), d(x))
    d.train()
    assert not torch.equal(d(x), d(x))


def test_filters_wider_than_the_sequence_are_an_error():
    with pytest.raises(ConfigError, match="widest filter"):
        Discriminator(50, 10)
