"""load_model_from_run: rebuild from config.yaml + tokenizer.json, best or last weights, eval mode."""

from __future__ import annotations

import pytest
import torch

from seqlab.checkpoint import save_weights
from seqlab.config import Config, ModelConfig
from seqlab.data.tokenizers import train_tokenizer
from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.models.loading import load_model_from_run
from seqlab.runs import open_run


@pytest.fixture
def run(tmp_path):
    run = open_run(tmp_path / "run", must_exist=False)
    config = Config(model=ModelConfig(arch="rnn_lm", cell="gru", n_layer=1, n_embd=8, hidden_size=8))
    tokenizer = train_tokenizer("char", ["hello world"])
    run.write_config(config)
    tokenizer.save(run.tokenizer)
    torch.manual_seed(0)
    last, best = (build_model(config.model, tokenizer.vocab_size) for _ in range(2))
    save_weights(last, run.model)
    return run, tokenizer, last, best


def test_loads_last_and_best(run):
    run, tokenizer, last, best = run
    idx = torch.tensor([tokenizer.encode("hello")])
    model, tok, config = load_model_from_run(run.path, "cpu", which="best")  # no best yet: the last weights
    assert not model.training and config.model.cell == "gru" and tok.vocab_size == tokenizer.vocab_size
    torch.testing.assert_close(model(idx), last.eval()(idx))
    save_weights(best, run.best)
    model, _, _ = load_model_from_run(run.path, which="best")
    torch.testing.assert_close(model(idx), best.eval()(idx))
    model, _, _ = load_model_from_run(run.path, which="last")
    torch.testing.assert_close(model(idx), last(idx))


def test_bad_requests(run, tmp_path):
    run = run[0]
    with pytest.raises(SeqlabError, match="unknown checkpoint 'first'"):
        load_model_from_run(run.path, which="first")
    with pytest.raises(SeqlabError, match="does not exist"):
        load_model_from_run(tmp_path / "nowhere")
    run.model.unlink()
    with pytest.raises(SeqlabError, match="no trained weights yet"):
        load_model_from_run(run.path)
