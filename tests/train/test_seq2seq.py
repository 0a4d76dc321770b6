"""The seq2seq recipe: a tiny reversal task trains, logs and checkpoints; Ctrl-C + resume is exact."""

from __future__ import annotations

import json
import os
import random
import re
import signal
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error

from seqlab.config import load_config
from seqlab.errors import ConfigError, SeqlabError
from seqlab.eval.plots import plot_loss_curves
from seqlab.runs import MetricsLog
from seqlab.train import seq2seq
from seqlab.train.pair_batches import PairBatcher
from seqlab.train.seq2seq import teacher_forcing, train_seq2seq


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _config(tmp: Path, model: dict | None = None, **train: object) -> Path:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdef") for _ in range(rng.randint(2, 6))) for _ in range(80)]
    corpus = tmp / "reverse.jsonl"
    corpus.write_text("".join(json.dumps({"source": w, "target": w[::-1]}) + "\n" for w in words), encoding="utf-8")
    cfg = {
        "seed": 5,
        "data": {"corpus": str(corpus), "task": "pairs", "tokenizer": "char", "val_fraction": 0.2},
        "model": model or {"arch": "seq2seq_rnn", "cell": "gru", "attention": "luong-general", "n_layer": 1,
                           "n_embd": 16, "hidden_size": 32, "input_feeding": False},
        "train": {"batch_size": 8, "max_steps": 24, "eval_interval": 12, "log_interval": 5, "warmup_steps": 2,
                  "lr": 1.0e-2, "samples": 1, **train},
        "decode": {"max_new_tokens": 8},
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _rows(run: Path, split: str) -> list[dict]:
    """metrics.jsonl rows of one kind, with the LM recipe's keys (train_loss / val_loss), renamed to `loss`."""
    key = f"{split}_loss"
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [{**r, "loss": r[key]} for r in rows if key in r]


def test_trains_validates_and_writes_the_run(tmp_path, capsys):
    summary = train_seq2seq(load_config(_config(tmp_path)), tmp_path / "run", "cpu")
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json", "tokenizer.json", "model.safetensors", "best.safetensors",
                 "trainer_state.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    val = _rows(run, "val")
    assert [r["step"] for r in val] == [12, 24]
    assert val[-1]["loss"] < val[0]["loss"] < 4.0 and val[-1]["val_ppl"] == pytest.approx(2.718281828 ** val[-1]["loss"])
    assert summary["step"] == 24 and summary["best_val_loss"] == min(r["loss"] for r in val)
    assert summary["tokens_per_s"] > 0
    samples = re.findall(r"(\w+) -> \w* \((\w+)\)", capsys.readouterr().err)  # a greedy reply per evaluation
    assert len(samples) == 2 and all(target == source[::-1] for source, target in samples)  # the pair's own text
    plot_loss_curves(MetricsLog(run / "metrics.jsonl").read(), run / "loss.png")  # `seqlab plot` reads the same keys
    assert (run / "loss.png").stat().st_size > 0


def test_transformer_trains_and_scheduled_sampling_decays(tmp_path):
    transformer = {"arch": "seq2seq_transformer", "n_layer": 1, "n_head": 2, "n_embd": 16, "context_length": 12}
    summary = train_seq2seq(load_config(_config(tmp_path, transformer, max_steps=6, eval_interval=6, samples=0)),
                            tmp_path / "t", "cpu")
    assert summary["best_val_loss"] < 5.0
    train_seq2seq(load_config(_config(tmp_path, None, max_steps=6, eval_interval=6, log_interval=3,
                                      scheduled_sampling=0.05, samples=0)), tmp_path / "ss", "cpu")
    assert [r["teacher_forcing"] for r in _rows(tmp_path / "ss", "train")] == pytest.approx([0.9, 0.75])
    assert teacher_forcing(0.05, 0) == 1.0 and teacher_forcing(0.05, 100) == 0.0


def test_ctrl_c_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    config = load_config(_config(tmp_path, None, max_steps=20, eval_interval=10, log_interval=1, samples=0))
    reference = train_seq2seq(config, tmp_path / "ref", "cpu")

    calls = {"n": 0}
    original = PairBatcher.next_indices

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] == 13:  # Ctrl-C while step 13 runs: the loop saves a checkpoint after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(PairBatcher, "next_indices", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train_seq2seq(config, tmp_path / "run", "cpu")
    monkeypatch.setattr(PairBatcher, "next_indices", original)
    assert [r["step"] for r in _rows(tmp_path / "run", "train")][-1] == 13
    resumed = train_seq2seq(config, tmp_path / "run", "cpu", resume=True)
    losses = [(r["step"], r["loss"]) for r in _rows(tmp_path / "run", "train")]
    assert losses == [(r["step"], r["loss"]) for r in _rows(tmp_path / "ref", "train")]
    assert resumed["weights_sha256"] == reference["weights_sha256"]


def test_bad_configs(tmp_path):
    with pytest.raises(SeqlabError, match="data.task: pairs"):
        seq2seq.build_setup(load_config(_config(tmp_path), ["data.task=lm"]), None, None, None, False)
    transformer = {"arch": "seq2seq_transformer", "n_layer": 1, "n_head": 2, "n_embd": 16}
    with pytest.raises(ConfigError, match="seq2seq_rnn only"):
        seq2seq.build_setup(load_config(_config(tmp_path, transformer, scheduled_sampling=0.1)), None, None, None, False)


def test_seqlab_train_routes_seq2seq_configs_to_this_recipe(tmp_path, cli):
    result = cli("train", _config(tmp_path, None, max_steps=4, eval_interval=4, samples=0), "--out",
                 tmp_path / "run", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["step"] == 4
    bad = cli("train", _config(tmp_path), "--set", "model.attention=concat", "--out", tmp_path / "bad")
    assert_one_line_error(bad)
    assert "none, bahdanau, luong-dot, luong-general" in bad.stderr
