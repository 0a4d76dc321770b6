"""SeqGAN generators: step decoding agrees with teacher forcing; the protocol's init."""

from __future__ import annotations

import pytest
import torch

from seqlab.errors import ConfigError
from seqlab.models.seqgan_generator import LSTMGenerator, TransformerGenerator, build_generator


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_step_decoding_equals_teacher_forcing(kind):
    torch.manual_seed(0)
    sizes = {"emb_dim": 8, "hidden_dim": 8} if kind == "lstm" else {"n_layer": 2, "n_head": 2, "n_embd": 16}
    g = build_generator(kind, 30, 7, start_token=3, **sizes).eval()
    seqs = torch.randint(0, 30, (4, 7))
    full = g(seqs)  # (B, T, V)
    logits, state = g.start(4)
    steps = [logits]
    for t in range(6):
        logits, state = g.step(seqs[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    lp = g.log_probs(seqs)
    torch.testing.assert_close(lp, torch.log_softmax(full, -1).gather(2, seqs[..., None]).squeeze(2))


def test_lstm_matches_torch_lstm_and_protocol_init():
    torch.manual_seed(0)
    g = LSTMGenerator(5000, 20)
    assert g.embedding.weight.shape == (5000, 32) and g.lstm.hidden_size == 32
    assert g.embedding.weight.std().item() == pytest.approx(0.1, rel=0.05)
    assert g.out.weight.std().item() == pytest.approx(0.1, rel=0.05)
    x, h, c = torch.randn(3, 32), torch.randn(3, 32), torch.randn(3, 32)
    cell = torch.nn.LSTMCell(32, 32)
    cell.load_state_dict({"weight_ih": g.lstm.weight_ih_l0, "weight_hh": g.lstm.weight_hh_l0,
                          "bias_ih": g.lstm.bias_ih_l0, "bias_hh": g.lstm.bias_hh_l0})
    ref_h, ref_c = cell(x, (h, c))
    got_h, got_c = g._cell(x, h, c)
    torch.testing.assert_close(got_h, ref_h)
    torch.testing.assert_close(got_c, ref_c)


def test_sample_shapes():
    torch.manual_seed(0)
    g = TransformerGenerator(11, 5, n_layer=1, n_head=2, n_embd=8)
    s = g.sample(9, chunk=4)
    assert s.shape == (9, 5) and int(s.max()) < 11
    with pytest.raises(ConfigError, match="unknown generator"):
        build_generator("gru", 11, 5)
