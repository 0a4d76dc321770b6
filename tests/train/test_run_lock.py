"""One process trains in a run directory at a time (RUN/.lock), tested with real processes."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_seqlab, wait_while_running
from tiny_setup import write_tiny_setup

from seqlab.errors import SeqlabError
from seqlab.train.run_lock import hold_run_lock

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def start_training(config: Path, run: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqlab", "train", str(config), "--out", str(run), "--device", "cpu",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ONE_THREAD})


def wait_for(proc: subprocess.Popen, path: Path) -> None:
    wait_while_running(proc, lambda: path.is_file() and path.read_text().strip())


def test_a_second_process_is_refused_while_the_first_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = write_tiny_setup(tmp_path, max_steps=100_000, eval_interval=20, samples=0)
    run = tmp_path / "run"
    first = start_training(config, run)
    try:
        wait_for(first, run / "trainer_state.json")  # it has a checkpoint: a --resume would otherwise start
        for args in (("train", "--resume", run), ("train", config, "--out", run)):
            second = run_seqlab(*args, "--device", "cpu", env=ONE_THREAD)
            assert_one_line_error(second)
            assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
        assert (run / ".lock").read_text().strip() == str(first.pid)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]
    counts = collections.Counter(r["step"] for r in rows if "train_loss" in r)
    assert counts and max(counts.values()) == 1  # nobody else wrote into its log

    # the lock died with the killed process: the run resumes, and then finishes, normally
    last_eval = max(r["step"] for r in rows if "val_loss" in r)
    resumed = run_seqlab("train", "--resume", run, "--device", "cpu", "--set", f"train.max_steps={last_eval + 40}",
                         env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr


def test_the_lock_is_per_directory_and_released_on_exit(tmp_path):
    run = tmp_path / "run"
    with hold_run_lock(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(SeqlabError, match=f"pid {os.getpid()}"):
            with hold_run_lock(run, "--resume"):
                pass
        with hold_run_lock(tmp_path / "other"):  # another directory is free
            pass
        (run / "config.yaml").write_text("x")
    with hold_run_lock(run):  # released
        pass
    assert (run / "config.yaml").is_file()


def test_a_directory_the_lock_created_is_removed_when_nothing_was_written(tmp_path):
    with pytest.raises(RuntimeError):
        with hold_run_lock(tmp_path / "new"):
            raise RuntimeError("setup failed")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with hold_run_lock(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir()


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SeqlabError, match="is a file"):
        with hold_run_lock(tmp_path / "f"):
            pass


def test_torchrun_ranks_other_than_0_do_not_lock(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with hold_run_lock(run):
        monkeypatch.setenv("RANK", "1")
        with hold_run_lock(run):  # rank 1 of the same job: rank 0's lock covers it
            pass


def test_seqgan_commands_take_the_lock(cli, tmp_path):
    out = tmp_path / "gan"
    with hold_run_lock(out):
        oracle = cli("seqgan", "oracle", "--preset", "small", "--methods", "random", "--out", out, "--device", "cpu")
        assert_one_line_error(oracle)
        assert f"pid {os.getpid()}" in oracle.stderr
        text = cli("seqgan", "train", "--data", tmp_path / "x.txt", "--out", out, "--device", "cpu")
        assert_one_line_error(text)
        assert f"pid {os.getpid()}" in text.stderr
