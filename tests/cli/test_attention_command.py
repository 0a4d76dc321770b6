"""`seqlab attention RUN --source TEXT --out attn.png`: heatmaps for RNN and Transformer runs, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error

from seqlab.checkpoint import save_weights
from seqlab.config import load_config
from seqlab.data.tokenizers import train_tokenizer
from seqlab.models import build_model
from seqlab.runs import RunDir

MODELS = {
    "rnn": ["model.arch=seq2seq_rnn", "model.attention=bahdanau", "model.hidden_size=16", "model.n_embd=8",
            "model.n_layer=1"],
    "transformer": ["model.arch=seq2seq_transformer", "model.n_layer=2", "model.n_head=2", "model.n_embd=8",
                    "model.context_length=32"],
    "lm": ["model.arch=rnn_lm", "model.hidden_size=16", "model.n_embd=8", "model.n_layer=1"],
}


def _run(tmp: Path, kind: str) -> Path:
    """A run directory holding a randomly initialised model (no training needed to draw its attention)."""
    cfg = load_config(None, ["data.task=pairs", *MODELS[kind]])
    tok = train_tokenizer("char", ["hello there", "how are you", "你好吗 我很好"])
    run = RunDir(tmp / kind)
    run.path.mkdir()
    run.write_config(cfg)
    tok.save(run.tokenizer)
    model = build_model(cfg.model, tok.vocab_size, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    save_weights(model, run.model)
    return run.path


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_writes_a_heatmap_of_the_greedy_reply(tmp_path, cli, kind):
    run = _run(tmp_path, kind)
    out = tmp_path / "attn.png"
    result = cli("attention", run, "--source", "hello", "--out", out, "--max-new-tokens", "6", "--json",
                 "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["source_tokens"] == list("hello")
    weights = report["weights"]
    assert len(weights) == len(report["target_tokens"]) >= 1 and all(len(row) == 5 for row in weights)
    assert all(abs(sum(row) - 1) < 1e-5 for row in weights)


def test_a_given_chinese_target_and_a_chosen_head(tmp_path, cli):
    run = _run(tmp_path, "transformer")
    result = cli("attention", run, "--source", "你好吗", "--target", "我很好", "--out", tmp_path / "zh.png",
                 "--layer", "0", "--head", "1", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source_tokens"] == list("你好吗") and report["target_tokens"] == [*"我很好", "<eos>"]


def test_bad_inputs_are_one_line_errors(tmp_path, cli):
    rnn, lm = _run(tmp_path, "rnn"), _run(tmp_path, "lm")
    out = str(tmp_path / "a.png")
    cases = {
        "needs a seq2seq model": cli("attention", lm, "--source", "hi", "--out", out),
        "does not exist": cli("attention", tmp_path / "nope", "--source", "hi", "--out", out),
        "apply to seq2seq_transformer": cli("attention", rnn, "--source", "hi", "--out", out, "--head", "0"),
        "'average'": cli("attention", rnn, "--source", "hi", "--out", out, "--head", "all"),
        "empty": cli("attention", rnn, "--source", "", "--out", out),
    }
    transformer = _run(tmp_path, "transformer")
    cases["layer 5 out of range"] = cli("attention", transformer, "--source", "hi", "--out", out, "--layer", "5")
    config = yaml.safe_load((rnn / "config.yaml").read_text())
    config["model"]["attention"] = "concat"
    (rnn / "config.yaml").write_text(yaml.safe_dump(config))
    cases["none, bahdanau, luong-dot, luong-general"] = cli("attention", rnn, "--source", "hi", "--out", out)
    for message, result in cases.items():
        assert_one_line_error(result)
        assert message in result.stderr, (message, result.stderr)
