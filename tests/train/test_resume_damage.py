"""`seqlab train --resume` on a damaged run: a bad pending checkpoint is discarded (the last good one
is used), a bad committed trainer state is one line and exit 2, and a kill's temporaries are removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error
from damaged_files import BYTES, VALUES, damage
from tiny_runs import LM, config_for, one_thread, train_run, write_text_corpus  # noqa: F401 - fixture

from seqlab.runs import RunDir
from seqlab.train.state import has_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run checkpointed at step 1 of 1 (each test copies it and raises max_steps to 2 to resume it)."""
    root = tmp_path_factory.mktemp("trained")
    return train_run(root / "run", config_for(write_text_corpus(root / "t.txt"), LM, "lm", tokenizer="char"))


@pytest.fixture
def run(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["max_steps"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


@pytest.mark.parametrize("pending", ["the issue's", "empty json", "truncated tensors", "other tensors"])
def test_a_damaged_pending_checkpoint_is_discarded_and_the_last_good_one_used(cli, run, pending):
    good = {name: (run / name).read_bytes() for name in ("trainer_state.json", "trainer_state.safetensors")}
    state = run / "trainer_state"
    next_json, next_tensors = run / "trainer_state_next.json", run / "trainer_state_next.safetensors"
    if pending == "the issue's":  # `: > RUN/trainer_state_next.json; head -c 1000 RUN/trainer_state.safetensors > ...`
        next_json.write_bytes(b"")
        next_tensors.write_bytes(good["trainer_state.safetensors"][:1000])
    else:
        shutil.copy(state.with_suffix(".json"), next_json)
        shutil.copy(state.with_suffix(".safetensors"), next_tensors)
        if pending == "empty json":
            next_json.write_bytes(b"")
        elif pending == "truncated tensors":
            damage(next_tensors, "truncated")
        else:  # a complete tensors file of another checkpoint: its token differs
            from seqlab.checkpoint import save_state

            save_state(run / "other", {"x": 1})
            os.replace(run / "other.safetensors", next_tensors)
    assert has_checkpoint(RunDir(run))
    r = cli("train", "--resume", run, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    [warning] = warnings_in(r.stderr)
    assert "discarding the damaged pending checkpoint" in warning and "trainer_state_next" in warning
    assert not next_json.exists() and not next_tensors.exists()
    assert '"step": 2' in r.stdout  # resumed from step 1, the last good checkpoint


@pytest.mark.parametrize("kind", BYTES + VALUES)
def test_a_damaged_trainer_state_is_one_line_and_left_as_it_is(cli, run, kind):
    tensors = run / "trainer_state.safetensors"
    damage(tensors, kind)
    before = tensors.read_bytes(), (run / "trainer_state.json").read_bytes()
    r = cli("train", "--resume", run, "--device", "cpu")
    assert_one_line_error(r)
    assert str(tensors) in r.stderr and "restore it from a copy or start the run again" in r.stderr
    if kind in VALUES:
        assert ("is int64 but the model's is float32" if kind == "int64" else "holds NaN or infinite") in r.stderr
    else:
        assert "trainer_state.safetensors is damaged" in r.stderr
    assert (tensors.read_bytes(), (run / "trainer_state.json").read_bytes()) == before


@pytest.mark.parametrize("text", ["", '{"token": "0123", "tr', '{"tree": []}', "[]"])
def test_a_damaged_trainer_state_json_is_one_line(cli, run, text):
    (run / "trainer_state.json").write_text(text)
    r = cli("train", "--resume", run, "--device", "cpu")
    assert_one_line_error(r)
    assert f"{run / 'trainer_state.json'} is damaged" in r.stderr


def test_a_trainer_state_without_its_keys_is_one_line(cli, run):
    from seqlab.checkpoint import save_state

    save_state(run / "trainer_state", {"step": 1, "model": {}})
    r = cli("train", "--resume", run, "--device", "cpu")
    assert_one_line_error(r)
    assert "is not a trainer state (no optimizer, scheduler, rng, extras)" in r.stderr


KILLED_WRITER = """
import os, signal, sys
from seqlab.io import atomic_open, atomic_path

with atomic_path(sys.argv[1]) as tmp:  # safetensors writes a file name
    tmp.write_bytes(b"half a tensor file")
    with atomic_open(sys.argv[2]) as f:  # a JSON written through a file object
        f.write('{"token": "half')
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_resume_removes_the_temporaries_a_kill_9_left(cli, run):
    for target in ("model.safetensors", "trainer_state.json"), ("trainer_state_next.safetensors", "metrics.jsonl"):
        killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, *(str(run / t) for t in target)])
        assert killed.returncode == -9
    stale = sorted(p.name for p in run.iterdir() if p.name.endswith((".tmp", ".tmp.safetensors")))
    assert len(stale) == 4 and all(name.startswith(".") for name in stale)
    assert any(p.name.startswith(".model.safetensors.") for p in run.glob("*.safetensors"))  # pathlib sees them
    others = [run / "mine.tmp", run / ".model.safetensors.tmp", run / ".notes.txt.abc.tmp", run / ".a.b.abcdefgh.tmp.c"]
    for p in others:
        p.write_text("not an atomic writer's temporary")
    (run / ".tb.abcdefgh.tmp").mkdir()
    others.append(run / ".tb.abcdefgh.tmp")

    r = cli("train", "--resume", run, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["best.safetensors", "model.safetensors",
                                                                  "trainer_state.safetensors"]
    assert not [p for p in run.iterdir() if p.name in stale] and all(p.exists() for p in others)
