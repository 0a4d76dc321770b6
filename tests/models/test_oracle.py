"""The oracle LSTM: the protocol's equations on a hand-computed step, NLL-oracle, loading and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.errors import DataError
from seqlab.models.oracle import (
    ORACLE_SHAPES,
    OracleLSTM,
    build_oracle,
    load_oracle_params,
    random_oracle_params,
)
from seqlab.modules.categorical import sample_categorical


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _tiny_params(rng, vocab=7, emb=3, hidden=3):
    shapes = {"embedding": (vocab, emb), "W_out": (hidden, vocab), "b_out": (vocab,)}
    for g in ("i", "f", "o_gate", "c"):
        shapes |= {f"W{g}": (emb, hidden), f"U{g}": (hidden, hidden), f"b{g}": (hidden,)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _numpy_step(p, x, h, c):
    """The protocol's cell, written out in numpy (row-vector convention)."""
    i = _sigmoid(x @ p["Wi"] + h @ p["Ui"] + p["bi"])
    f = _sigmoid(x @ p["Wf"] + h @ p["Uf"] + p["bf"])
    o = _sigmoid(x @ p["Wo_gate"] + h @ p["Uo_gate"] + p["bo_gate"])
    c_tilde = np.tanh(x @ p["Wc"] + h @ p["Uc"] + p["bc"])
    c = f * c + i * c_tilde
    h = o * np.tanh(c)
    return h, c, h @ p["W_out"] + p["b_out"]


def test_cell_matches_the_protocol_equations_by_hand():
    # one step with 2x2 weights small enough to check on paper: x = [1, 0], h = [0, 1], c = [0.5, -0.5]
    eye, ones = np.eye(2, dtype=np.float32), np.ones((2, 2), dtype=np.float32)
    p = {"embedding": np.array([[1, 0], [0, 1], [1, 1]], np.float32), "W_out": eye, "b_out": np.zeros(2, np.float32),
         "Wi": eye, "Ui": 0 * eye, "bi": np.zeros(2, np.float32), "Wf": 0 * eye, "Uf": eye, "bf": np.zeros(2, np.float32),
         "Wo_gate": ones, "Uo_gate": 0 * eye, "bo_gate": np.zeros(2, np.float32),
         "Wc": eye, "Uc": eye, "bc": np.zeros(2, np.float32)}
    x, h, c = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[0.5, -0.5]])
    s = _sigmoid
    # i = σ([1, 0]), f = σ([0, 1]), o = σ([1, 1]), c̃ = tanh([1, 1])
    c_new = np.array([[s(0) * 0.5 + s(1) * np.tanh(1), s(1) * -0.5 + s(0) * np.tanh(1)]])
    h_new = s(1) * np.tanh(c_new)
    oracle = OracleLSTM(p)
    h_t, c_t = oracle.cell(*(torch.tensor(a, dtype=torch.float32) for a in (x, h, c)))
    np.testing.assert_allclose(c_t.numpy(), c_new, rtol=1e-6)
    np.testing.assert_allclose(h_t.numpy(), h_new, rtol=1e-6)


def test_log_probs_match_a_numpy_unroll():
    rng = np.random.default_rng(0)
    p = _tiny_params(rng)
    seqs = rng.integers(0, 7, size=(4, 6))
    oracle = OracleLSTM(p, seq_len=6, start_token=0)
    got = oracle.log_probs(torch.tensor(seqs)).numpy()
    for b in range(4):
        h = c = np.zeros((1, 3))
        x = p["embedding"][[0]]
        for t in range(6):
            h, c, logits = _numpy_step(p, x, h, c)
            logp = logits - np.log(np.exp(logits).sum())
            assert got[b, t] == pytest.approx(logp[0, seqs[b, t]], abs=1e-5)
            x = p["embedding"][[seqs[b, t]]]
    assert oracle.nll(torch.tensor(seqs)) == pytest.approx(-got.mean(), rel=1e-6)


def test_sampling_follows_the_oracle():
    # a 1-step oracle whose distribution is known: the sample frequencies match softmax(logits)
    rng = np.random.default_rng(1)
    p = _tiny_params(rng, vocab=5)
    oracle = OracleLSTM(p, seq_len=1)
    seqs = oracle.sample(40_000, generator=torch.Generator().manual_seed(0))
    probs = oracle.log_probs(torch.arange(5)[:, None]).exp().squeeze(1).numpy()
    freq = np.bincount(seqs[:, 0].numpy(), minlength=5) / 40_000
    np.testing.assert_allclose(freq, probs, atol=0.01)


def test_sample_categorical_matches_multinomial_frequencies():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, -30.0]]).repeat(50_000, 1)
    draws = sample_categorical(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    torch.testing.assert_close(freq, torch.softmax(logits[0].double(), 0), atol=0.008, rtol=0)
    assert draws.max() < 5


@pytest.mark.shared_data("seqgan_oracle_params.npz")
def test_published_parameters_load(tmp_path):
    oracle, source = build_oracle()
    assert source.endswith("seqgan_oracle_params.npz")
    assert oracle.vocab_size == 5000 and oracle.seq_len == 20
    seqs = oracle.sample(8, generator=torch.Generator().manual_seed(0))
    assert seqs.shape == (8, 20) and 0 <= int(seqs.min()) and int(seqs.max()) < 5000
    assert 3.0 < oracle.nll(seqs) < 12.0  # its own samples: about its entropy, far below log(5000) + slack


def test_missing_default_file_falls_back_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQLAB_DATA", str(tmp_path))
    oracle, source = build_oracle(seed=3)
    assert "random" in source
    assert "RANDOM" in capsys.readouterr().err
    np.testing.assert_array_equal(oracle.W_out.numpy(), random_oracle_params(3)["W_out"])


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_oracle_params(tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable"):
        load_oracle_params(tmp_path / "corrupt.npz")
    good = random_oracle_params(0)
    np.savez(tmp_path / "shape.npz", **(good | {"W_out": np.zeros((32, 4999), np.float32)}))
    with pytest.raises(DataError, match=r"W_out has shape \[32, 4999\], expected \[32, 5000\]"):
        load_oracle_params(tmp_path / "shape.npz")
    np.savez(tmp_path / "missing_array.npz", **{k: v for k, v in good.items() if k != "bc"})
    with pytest.raises(DataError, match="missing \\['bc'\\]"):
        load_oracle_params(tmp_path / "missing_array.npz")
    np.savez(tmp_path / "pickled.npz", **(good | {"bi": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(DataError):
        load_oracle_params(tmp_path / "pickled.npz")
    assert set(ORACLE_SHAPES) == set(good)
