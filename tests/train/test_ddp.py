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
