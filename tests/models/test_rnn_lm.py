"""RNNLanguageModel: torch's cells against the gate equations written out by hand, and the decoder-state protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.config import ModelConfig
from seqlab.decode.state import DecoderModel
from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.models.rnn_lm import RNNLanguageModel

V = 29
CELLS = ["rnn", "lstm", "gru"]


def make(cell: str, seed: int = 0, **kw) -> RNNLanguageModel:
    torch.manual_seed(seed)
    args = dict(n_layer=2, n_embd=12, hidden_size=16) | kw
    model = RNNLanguageModel(V, cell, **args).eval()
    with torch.no_grad():  # a large spread, so near-ties cannot flip an argmax
        model.lm_head.bias.normal_(0, 3.0)
    return model


def hand_step(cell: str, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of one layer, the textbook equations (x (B, I), h, c (B, H))."""
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    if cell == "rnn":
        return torch.tanh(gi + gh), None
    if cell == "lstm":
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_next), c_next
    r_i, z_i, n_i = gi.chunk(3, dim=1)
    r_h, z_h, n_h = gh.chunk(3, dim=1)
    r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
    n = torch.tanh(n_i + r * n_h)
    return (1 - z) * n + z * h, None


@pytest.mark.parametrize("cell", CELLS)
def test_one_step_matches_the_gate_equations(cell):
    model = make(cell)
    B, L, H = 3, 2, 16
    tokens = torch.randint(0, V, (B,))
    h0 = torch.randn(L, B, H)
    c0 = torch.randn(L, B, H)
    state = (h0, c0) if cell == "lstm" else h0
    logits, new_state = model.step(tokens, state)
    x = model.embedding(tokens)
    hs, cs = [], []
    for layer in range(L):
        w = [getattr(model.rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = hand_step(cell, x, h0[layer], c0[layer], *w)
        hs.append(h)
        cs.append(c)
        x = h
    h_new = new_state[0] if cell == "lstm" else new_state
    torch.testing.assert_close(h_new, torch.stack(hs), atol=1e-6, rtol=1e-5)
    if cell == "lstm":
        torch.testing.assert_close(new_state[1], torch.stack(cs), atol=1e-6, rtol=1e-5)
    expected = model.proj(x) @ model.embedding.weight.T + model.lm_head.bias  # tied, hidden 16 != n_embd 12
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_forward_returns_logits_or_logits_and_loss():
    model = make("lstm")
    idx = torch.randint(0, V, (2, 6))
    logits = model(idx)
    assert logits.shape == (2, 6, V)
    targets = idx.clone()
    targets[1, 2:] = -100
    _, loss = model(idx, targets)
    keep = targets != -100
    torch.testing.assert_close(loss, -F.log_softmax(logits, -1)[keep].gather(1, targets[keep][:, None]).mean())


def test_tying_and_projection():
    tied_same = make("gru", n_embd=16, hidden_size=16)
    assert tied_same.lm_head.weight is tied_same.embedding.weight and tied_same.proj is None
    tied_wider = make("gru", n_embd=8, hidden_size=16)
    assert tied_wider.lm_head.weight is tied_wider.embedding.weight and tied_wider.proj.weight.shape == (8, 16)
    untied = make("gru", n_embd=8, hidden_size=16, tie_embeddings=False)
    assert untied.proj is None and untied.lm_head.weight.shape == (V, 16)


@pytest.mark.parametrize("cell", CELLS)
def test_cached_and_uncached_decoding_agree(cell):
    model = make(cell)
    assert isinstance(model, DecoderModel) and model.max_length is None and not model.is_encoder_decoder
    prompt = torch.randint(0, V, (3, 4))
    with torch.no_grad():
        logits, state = model.prefill(prompt, None, 8)
        seq = prompt
        for _ in range(8):
            ref = model(seq)[:, -1]
            torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
            tok = logits.argmax(-1)
            assert torch.equal(tok, ref.argmax(-1))
            seq = torch.cat([seq, tok[:, None]], 1)
            logits, state = model.step(tok, state)


@pytest.mark.parametrize("cell", CELLS)
def test_left_padding_never_touches_the_state(cell):
    model = make(cell)
    lengths = [5, 2, 1]
    prompt = torch.randint(0, V, (3, 5))
    mask = torch.tensor([[0] * (5 - n) + [1] * n for n in lengths])
    follow = torch.randint(0, V, (3, 3))
    with torch.no_grad():
        logits, state = model.prefill(prompt, mask, 3)
        other_pads, _ = model.prefill(prompt.masked_fill(mask == 0, 11), mask, 3)
        torch.testing.assert_close(logits, other_pads)
        batch = [logits]
        for t in range(3):
            logits, state = model.step(follow[:, t], state)
            batch.append(logits)
        for b, n in enumerate(lengths):
            alone = model(torch.cat([prompt[b:b + 1, 5 - n:], follow[b:b + 1]], 1))[0, n - 1:]  # (4, V)
            torch.testing.assert_close(torch.stack([x[b] for x in batch]), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reorder_state(cell):
    model = make(cell)
    prompt = torch.randint(0, V, (3, 4))
    tok = torch.tensor([4, 5, 6])
    with torch.no_grad():
        _, state = model.prefill(prompt, None, 2)
        index = torch.tensor([1, 1, 2, 0])
        logits, _ = model.step(tok[index], model.reorder_state(state, index))
        for row, src in enumerate(index.tolist()):
            _, alone = model.prefill(prompt[src:src + 1], None, 2)
            ref, _ = model.step(tok[src:src + 1], alone)
            torch.testing.assert_close(logits[row], ref[0])


def test_bad_inputs():
    model = make("lstm")
    with pytest.raises(SeqlabError, match="at least one token"):
        model.prefill(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[0, 0, 0], [1, 1, 1]]), 1)
    with pytest.raises(SeqlabError, match="unknown cell"):
        RNNLanguageModel(V, "transformer")


def test_registry_builds_from_config():
    cfg = ModelConfig(arch="rnn_lm", cell="gru", n_layer=3, n_embd=10, hidden_size=20, dropout=0.1,
                      tie_embeddings=False)
    model = build_model(cfg, 40, pad_id=0)
    assert isinstance(model, RNNLanguageModel) and isinstance(model.rnn, torch.nn.GRU)
    assert (model.rnn.num_layers, model.rnn.input_size, model.rnn.hidden_size, model.rnn.dropout) == (3, 10, 20, 0.1)
    assert model.lm_head.weight.shape == (40, 20)
