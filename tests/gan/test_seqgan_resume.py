"""SeqGAN resumes exactly after a real `kill -9` or SIGTERM (text and oracle), and after a torn checkpoint write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import wait_while_running

import seqlab.checkpoint
from seqlab.models.oracle import build_oracle
from seqlab.train.seqgan import PRESETS, OracleExperiment

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# --rollout-rate 0.8: the rollout policy is a copy of G with its own weights, which a checkpoint must carry too
TEXT = ("--max-len", "20", "--pretrain-epochs", "12", "--d-pretrain-iters", "2", "--adv-rounds", "3",
        "--rollouts", "2", "--rollout-rate", "0.8", "--samples", "4", "--size", "8", "--batch-size", "8",
        "--device", "cpu", "--json")
ORACLE_TINY = {"num_real": 48, "batch_size": 16, "pretrain_epochs": 2, "mle_epochs": 3, "ss_epochs": 2,
               "d_pretrain_iters": 1, "d_negatives": 32, "d_epochs": 1, "adv_rounds": 2, "d_iters_per_round": 1,
               "num_rollouts": 2, "pg_bleu_pretrain_epochs": 2, "pg_bleu_rounds": 2, "eval_samples": 48,
               "curve_samples": 32, "curve_every_epochs": 1, "curve_every_rounds": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text_reference(tmp_path_factory):
    """The corpus and an uninterrupted `seqlab seqgan train` run of it (in its own process)."""
    root = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    words = ["spring", "moon", "river", "wind", "snow", "pine", "hill", "cloud"]
    corpus = root / "poems.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 2))) for _ in range(60)) + "\n",
                      encoding="utf-8")
    done = subprocess.run(_text_command(corpus, root / "ref"), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr
    return corpus, root / "ref"


def _text_command(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqlab", "seqgan", "train", "--data", str(corpus), "--out", str(out), *TEXT, *extra]


def _position(out: Path) -> tuple[int, int, int]:
    """(MLE epoch, D pre-training iteration, adversarial round) of the run's checkpoint; (-1, -1, -1) if none."""
    try:
        tree = json.loads((out / "state.json").read_text())["tree"]["__dict__"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1, -1, -1
    state = {k: v for k, v in tree if isinstance(k, str)}
    return state["epoch"], state["d_iter"], state["round"]


def _wait_for(proc: subprocess.Popen, out: Path, position: tuple[int, int, int]) -> tuple[int, int, int]:
    wait_while_running(proc, lambda: _position(out) >= position, poll=0.005)
    return _position(out)


def _same_run(out: Path, reference: Path) -> None:
    """Bit for bit: both generators and the report (its wall-clock timings and paths aside)."""
    for name in ("mle_generator.safetensors", "generator.safetensors", "lm/model.safetensors"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name

    def report(run: Path) -> dict:
        return {k: v for k, v in json.loads((run / "report.json").read_text()).items() if k not in ("timings", "lm_run")}

    assert report(out) == report(reference)


def test_text_train_resumes_exactly_after_kill_9_in_every_phase(text_reference, tmp_path):
    corpus, reference = text_reference
    out = tmp_path / "killed"
    # a checkpoint after every epoch / iteration / round, so that each kill lands after some progress
    command = _text_command(corpus, out, "--checkpoint-every", "0")
    killed_at = []
    for position in ((4, 0, 0), (12, 1, 0), (12, 2, 1)):  # MLE pre-training, D pre-training, adversarial
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **ONE_THREAD})
        killed_at.append(_wait_for(proc, out, position))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed_at[0][0] < 12 and killed_at[1][1] < 2 and killed_at[2][2] < 3, killed_at  # one kill per phase
    assert not (out / "report.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr
    _same_run(out, reference)


def test_text_train_sigterm_checkpoints_exits_143_and_resumes_exactly(text_reference, tmp_path):
    corpus, reference = text_reference
    out = tmp_path / "run"
    proc = subprocess.Popen(_text_command(corpus, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ONE_THREAD})
    _wait_for(proc, out, (12, 0, 0))  # MLE pre-training is over (its checkpoint); D pre-training runs
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines == [f"seqlab: interrupted: checkpoint saved in {out}; continue with the same "
                     f"`seqlab seqgan train ... --out {out}` command"]
    # the default --checkpoint-every is 60 s: only the signal saved a checkpoint inside D pre-training
    assert _position(out) in ((12, 1, 0), (12, 2, 0))
    done = subprocess.run(_text_command(corpus, out), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr
    _same_run(out, reference)


def _oracle_protocol():
    return PRESETS["small"].replace(**{**ORACLE_TINY, "adv_rounds": 3}, checkpoint_every_s=1e9, rollout_rate=0.8)


def test_oracle_sigterm_checkpoints_at_the_next_round_and_resumes_exactly(tmp_path):
    from seqlab.train.interrupt import Interrupted

    protocol, (oracle, _) = _oracle_protocol(), build_oracle()
    device = torch.device("cpu")
    full = OracleExperiment(protocol, oracle, 0, tmp_path / "full", device).run("seqgan")

    def sigterm_once(method):  # the checkpoint at the end of D pre-training: SIGTERM arrives during round 1
        if method == "seqgan" and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    sent: list[bool] = []
    with pytest.raises(Interrupted) as stopped:
        OracleExperiment(protocol, oracle, 0, tmp_path / "cut", device, on_checkpoint=sigterm_once).run("seqgan")
    assert stopped.value.exit_code == 143 and str(tmp_path / "cut" / "seqgan") in stopped.value.message
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the trainer's only while it trains
    assert _position_of(tmp_path / "cut" / "seqgan") == 1  # saved after round 1, not at the phase's end
    resumed = OracleExperiment(protocol, oracle, 0, tmp_path / "cut", device).run("seqgan")
    assert (resumed["nll_oracle"], resumed["curve"], resumed["d_acc"]) == (full["nll_oracle"], full["curve"],
                                                                          full["d_acc"])


def _position_of(method_dir: Path) -> int:
    tree = json.loads((method_dir / "state.json").read_text())["tree"]["__dict__"]
    return {k: v for k, v in tree if isinstance(k, str)}["round"]


def test_oracle_resumes_exactly_after_a_kill_inside_a_checkpoint_write(tmp_path, monkeypatch):
    """A kill between a checkpoint's tensors and its JSON leaves the previous checkpoint whole."""
    protocol, (oracle, _) = _oracle_protocol().replace(checkpoint_every_s=0.0), build_oracle()
    device = torch.device("cpu")
    full = OracleExperiment(protocol, oracle, 0, tmp_path / "full", device).run("seqgan")

    real_write_json, writes = seqlab.checkpoint.write_json, []

    def dies_writing_the_third_state(path, obj, **kwargs):
        if Path(path).parent.name == "seqgan" and Path(path).stem.startswith("state"):
            writes.append(path)
            if len(writes) == 3:  # the tensors of the round-2 checkpoint are on disk, its JSON is not
                raise KeyboardInterrupt
        return real_write_json(path, obj, **kwargs)

    monkeypatch.setattr(seqlab.checkpoint, "write_json", dies_writing_the_third_state)
    with pytest.raises(KeyboardInterrupt):
        OracleExperiment(protocol, oracle, 0, tmp_path / "cut", device).run("seqgan")
    monkeypatch.setattr(seqlab.checkpoint, "write_json", real_write_json)
    resumed = OracleExperiment(protocol, oracle, 0, tmp_path / "cut", device).run("seqgan")
    assert (resumed["nll_oracle"], resumed["curve"], resumed["d_acc"]) == (full["nll_oracle"], full["curve"],
                                                                          full["d_acc"])


def test_oracle_seqgan_does_not_depend_on_what_ran_before_it(tmp_path):
    """D starts from a seeded initialisation: a rerun that finds MLE done (e.g. after a kill) gets the same D."""
    protocol, (oracle, _) = _oracle_protocol().replace(adv_rounds=1), build_oracle()
    device = torch.device("cpu")
    first = OracleExperiment(protocol, oracle, 0, tmp_path / "a", device)
    first.run("mle")
    torch.manual_seed(12345)
    after_mle = first.run("seqgan")
    torch.manual_seed(54321)
    alone = OracleExperiment(protocol, oracle, 0, tmp_path / "b", device).run("seqgan")
    assert (after_mle["nll_oracle"], after_mle["d_acc"]) == (alone["nll_oracle"], alone["d_acc"])
