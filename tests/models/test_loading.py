"""load_model_from_run: rebuild from config.yaml + tokenizer.json, best or last weights, eval mode."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import assert_one_line_error
from damaged_files import BYTES, VALUES, damage
from tiny_runs import LM, config_for, make_run, write_text_corpus

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


def test_damaged_weights_say_which_other_weights_may_still_be_good(run):
    run, _, _, best = run
    save_weights(best, run.best)
    run.best.write_bytes(run.best.read_bytes()[:100])
    with pytest.raises(SeqlabError, match=r"best\.safetensors is damaged.*model\.safetensors, --checkpoint last"):
        load_model_from_run(run.path, which="best")
    save_weights(best, run.best)
    run.model.write_bytes(b"")
    with pytest.raises(SeqlabError, match=r"model\.safetensors is damaged: it is empty; restore it or retrain; "
                                          r"best\.safetensors \(--checkpoint best\) may still be good$"):
        load_model_from_run(run.path, which="last")
    run.best.unlink()
    with pytest.raises(SeqlabError, match=r"model\.safetensors is damaged: it is empty; restore it or retrain$"):
        load_model_from_run(run.path)


@pytest.fixture(scope="module")
def tiny_lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return make_run(root / "run", config_for(write_text_corpus(root / "t.txt"), LM, "lm", tokenizer="char"))


@pytest.mark.parametrize("kind", BYTES + VALUES)
def test_generate_refuses_damaged_weights_in_one_line(cli, tiny_lm_run, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(tiny_lm_run, run)
    damage(run / "model.safetensors", kind)
    r = cli("generate", run, "--prompt", "the", "--device", "cpu")
    assert_one_line_error(r)
    assert f"{run / 'model.safetensors'}" in r.stderr and r.stderr.rstrip().endswith("restore it or retrain")
    if kind in VALUES:
        assert ("is int64 but the model's is float32" if kind == "int64" else "holds NaN or infinite") in r.stderr
    else:
        assert "model.safetensors is damaged" in r.stderr
