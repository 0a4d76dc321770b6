"""`seqlab train` and `seqlab plot` from the command line: a complete run, presets, early stopping, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, shared_data_file

from seqlab.models.loading import load_model_from_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """A 20,000-character corpus and a one-block Transformer config (a run takes about a second)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(shared_data_file("tinyshakespeare.txt").read_text(encoding="utf-8")[:20000], encoding="utf-8")
    cfg = {
        "data": {"corpus": str(corpus), "task": "lm", "tokenizer": "char", "split": "contiguous"},
        "model": {"arch": "transformer_lm", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 16},
        "train": {"batch_size": 8, "max_steps": 20, "eval_interval": 10, "log_interval": 2, "warmup_steps": 2,
                  "samples": 1},
        "decode": {"max_new_tokens": 10},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_train_writes_a_complete_run_and_plot_draws_it(cli, tiny, tmp_path):
    run = tmp_path / "run"
    r = cli("train", tiny, "--out", run, "--device", "cpu", "--seed", "3", "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["step"] == 20 and summary["best_step"] in (10, 20) and summary["world_size"] == 1
    for name in ("config.yaml", "run.json", "tokenizer.json", "model.safetensors", "best.safetensors",
                 "trainer_state.json", "trainer_state.safetensors", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert any((run / "tb").glob("events.out.tfevents.*"))
    assert json.loads((run / "run.json").read_text())["seed"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(2, 21, 2))
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val] == [10, 20]
    assert min(r["val_loss"] for r in val) == pytest.approx(summary["best_val_loss"])
    assert "step 10: val loss" in r.stderr  # eval lines and samples go to stderr, JSON alone to stdout

    model, tokenizer, config = load_model_from_run(run, which="best")
    assert config.train.max_steps == 20 and config.seed == 3 and tokenizer.vocab_size == model.lm_head.out_features

    p = cli("plot", run, "--json")
    assert p.exit_code == 0, p.stderr
    png = Path(json.loads(p.stdout)["plot"])
    assert png == run / "loss.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli("plot", run, "--out", tmp_path / "curves.png").exit_code == 0
    assert (tmp_path / "curves.png").is_file()


@pytest.mark.shared_data("tinyshakespeare.txt")
def test_a_preset_by_name_with_overrides(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = cli("train", "shakespeare-char-lstm-cpu", "--out", tmp_path / "run", "--device", "cpu", "--json",
            "--set", "model.n_embd=16", "--set", "model.hidden_size=16", "--set", "train.max_steps=3",
            "--set", "train.batch_size=2", "--set", "train.eval_batches=2", "--set", "train.eval_interval=3")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["step"] == 3
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["cell"] == "lstm"


def test_early_stopping_after_patience_evaluations_without_improvement(cli, tiny, tmp_path):
    # lr 1e-12 leaves fp32 weights unchanged, so the val loss never improves after the first evaluation
    r = cli("train", tiny, "--out", tmp_path / "run", "--device", "cpu", "--json", "--set", "train.lr=1e-12",
            "--set", "train.min_lr=0", "--set", "train.eval_interval=2", "--set", "train.patience=2")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["stopped_early"] and summary["step"] == 6 and summary["best_step"] == 2
    assert "early stopping" in r.stderr
    resumed = cli("train", "--resume", tmp_path / "run")
    assert_one_line_error(resumed)
    assert "nothing to resume" in resumed.stderr


@pytest.mark.parametrize("override", [
    "train.bogus=1",  # unknown key
    "train.lr=fast",  # wrong type
    "model.n_embd=0",  # zero size
    "train.batch_size=-8",  # negative size
    "train.grad_accum=3",  # batch 8 does not split into 3 micro-batches
    "model.context_length=4000",  # longer than the corpus: no training window fits
    "data.task=pairs",  # not a language-model corpus
])
def test_bad_configs_are_one_line_errors(cli, tiny, tmp_path, override):
    r = cli("train", tiny, "--out", tmp_path / "run", "--device", "cpu", "--set", override)
    assert_one_line_error(r)


def test_bad_command_lines_are_one_line_errors(cli, tiny, tmp_path):
    (tmp_path / "notarun").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        ("train", tiny),  # no --out
        ("train", "--out", tmp_path / "r"),  # no config
        ("train", "no-such-preset", "--out", tmp_path / "r"),
        ("train", tmp_path / "missing.yaml", "--out", tmp_path / "r"),
        ("train", tiny, "--out", tmp_path / "full"),  # not empty
        ("train", "--resume", tmp_path / "notarun"),
        ("train", "--resume", tmp_path / "missing"),
        ("train", tiny, "--resume", tmp_path / "notarun"),
        ("train", tiny, "--out", tmp_path / "r", "--device", "tpu"),
        ("plot", tmp_path / "notarun"),
        ("plot", tmp_path / "missing"),
    ]
    for args in cases:
        assert_one_line_error(cli(*args))


def test_plot_of_a_run_without_logs_and_resume_of_a_run_without_checkpoint(cli, tiny, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    from seqlab.config import load_config
    from seqlab.runs import RunDir

    RunDir(run).write_config(load_config(tiny))  # complete, as seqlab writes a run's config.yaml
    assert_one_line_error(cli("plot", run))
    r = cli("train", "--resume", run, "--device", "cpu", "--json")  # nothing to lose: it starts from step 0
    assert r.exit_code == 0, r.stderr
    assert "has no checkpoint" in r.stderr and json.loads(r.stdout)["step"] == 20
