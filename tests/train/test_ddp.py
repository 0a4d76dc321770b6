"""Data-parallel training with 2 CPU processes (torchrun, gloo) against a single process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_seqlab
from tiny_setup import write_tiny_setup

STEPS = 12


def logged(run: Path) -> tuple[list[float], list[float], dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r["train_loss"] for r in rows if "train_loss" in r]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    return train, val, next(r for r in rows if r.get("event") == "end")


def test_two_ranks_match_one_process_and_stay_identical(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    # global batch 8 = 2 accumulation steps x 2 ranks x 2 windows (one process: 2 x 4 windows)
    config = write_tiny_setup(tmp_path, max_steps=STEPS, eval_interval=6, grad_accum=2, samples=0)
    single = run_seqlab("train", config, "--out", tmp_path / "single", "--device", "cpu", env=env)
    assert single.returncode == 0, single.stderr

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "seqlab", "train", str(config), "--out", str(tmp_path / "ddp"), "--device", "cpu", "--json"]
    ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads(ddp.stdout.strip().splitlines()[-1])["world_size"] == 2  # rank 0 alone prints

    train_1, val_1, end_1 = logged(tmp_path / "single")
    train_2, val_2, end_2 = logged(tmp_path / "ddp")
    assert len(train_2) == STEPS and len(val_2) == 2
    assert train_2 == pytest.approx(train_1, rel=1e-5)
    assert val_2 == pytest.approx(val_1, rel=1e-5)
    digests = end_2["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]  # bit-identical weights on both ranks
    assert end_1["world_size"] == 1 and end_2["world_size"] == 2


def test_seq2seq_recipe_trains_on_two_ranks_with_identical_weights(tmp_path):
    """The seq2seq recipe under torchrun: rank 0 prepares the data first, both ranks end bit-identical."""
    import yaml

    rows = [{"source": f"say {w} {v}", "target": f"{v} {w}", "group": str(i)}
            for i, (w, v) in enumerate((w, v) for w in ("red", "green", "blue", "gold") for v in ("one", "two", "three"))]
    corpus = tmp_path / "pairs.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "s2s.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 3,
        "data": {"corpus": str(corpus), "task": "pairs", "tokenizer": "word", "split": "random", "val_fraction": 0.25},
        "model": {"arch": "seq2seq_rnn", "cell": "gru", "attention": "bahdanau", "n_layer": 1, "n_embd": 16,
                  "hidden_size": 16, "bidirectional": True},
        "train": {"batch_size": 4, "max_steps": 6, "eval_interval": 3, "log_interval": 1, "warmup_steps": 1,
                  "samples": 0}}), encoding="utf-8")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "seqlab", "train", str(config), "--out", str(tmp_path / "ddp"), "--device", "cpu", "--json"]
    ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads(ddp.stdout.strip().splitlines()[-1])["world_size"] == 2
    train, val, end = logged(tmp_path / "ddp")
    assert len(train) == 6 and len(val) == 2 and all(v == v for v in val)  # finite, logged by rank 0 alone
    digests = end["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
