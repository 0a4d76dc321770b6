"""Exact resume with a real `kill -9` (and Ctrl-C): the resumed run's losses equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import metric_lines, run_seqlab, wait_while_running
from tiny_setup import write_tiny_setup

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models run far faster on one thread of a busy CPU
MAX_STEPS = 240  # long enough that the run is still going when the test kills it
KILL_AFTER = 40  # kill once a checkpoint at or beyond this step exists


def losses(run: Path) -> list[tuple[int, str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], key, r[key]) for r in rows for key in ("train_loss", "val_loss") if key in r]


def checkpoint_step(run: Path) -> int:
    try:
        tree = json.loads((run / "trainer_state.json").read_text())["tree"]["__dict__"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1
    return dict((k, v) for k, v in tree if isinstance(k, str))["step"]


def start(config: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqlab", "train", str(config), "--out", str(run), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD})


def wait_for_checkpoint(proc: subprocess.Popen, run: Path, step: int) -> int:
    wait_while_running(proc, lambda: checkpoint_step(run) >= step)
    return checkpoint_step(run)


def test_kill_9_then_resume_reproduces_the_uninterrupted_losses(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = write_tiny_setup(tmp_path, max_steps=MAX_STEPS, eval_interval=20, samples=0)
    reference = run_seqlab("train", config, "--out", tmp_path / "ref", "--device", "cpu", env=ONE_THREAD)
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "killed"
    proc = start(config, run)
    saved = wait_for_checkpoint(proc, run, KILL_AFTER)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert saved < MAX_STEPS and checkpoint_step(run) < MAX_STEPS

    resumed = run_seqlab("train", "--resume", run, "--device", "cpu", env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    expected = losses(tmp_path / "ref")
    assert len(expected) == MAX_STEPS + MAX_STEPS // 20
    assert losses(run) == expected  # exactly, not approximately


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = write_tiny_setup(tmp_path, max_steps=MAX_STEPS, eval_interval=1000, samples=0)
    run = tmp_path / "run"
    proc = start(config, run)
    wait_while_running(proc, lambda: metric_lines(run) >= 20)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    step = checkpoint_step(run)
    assert 20 <= step < MAX_STEPS
    assert losses(run)[-1][0] == step  # the log ends where the checkpoint is


def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_exactly(tmp_path, monkeypatch):
    """SIGTERM (a scheduler's or `kill`'s) is handled like Ctrl-C: checkpoint, one line, exit 128 + 15."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = write_tiny_setup(tmp_path, max_steps=MAX_STEPS, eval_interval=1000, samples=0)
    reference = run_seqlab("train", config, "--out", tmp_path / "ref", "--device", "cpu", env=ONE_THREAD)
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "seqlab", "train", str(config), "--out", str(run), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ONE_THREAD})
    wait_while_running(proc, lambda: metric_lines(run) >= 20)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, stderr
    step = checkpoint_step(run)
    assert 20 <= step < MAX_STEPS
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines == [f"seqlab: interrupted: checkpoint saved at step {step} in {run}; "
                     f"continue with `seqlab train --resume {run}`"]

    resumed = run_seqlab("train", "--resume", run, "--device", "cpu", env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(run) == losses(tmp_path / "ref")
    summary = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    reference_summary = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()][-1]
    assert summary["weights_sha256"] == reference_summary["weights_sha256"]
