import os
import random

import numpy as np
import pytest
import torch
from tiny_setup import one_thread  # noqa: F401 - fixture

from seqlab.config import ModelConfig
from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.runs import RunDir
from seqlab.train.batches import WindowSampler
from seqlab.train.distributed import DistInfo
from seqlab.train.optim import build_optimizer, build_scheduler
from seqlab.train.state import has_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from seqlab.train.step import train_step

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")
STREAM = torch.randint(13, (400,), generator=torch.Generator().manual_seed(0))


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=16, context_length=8,
                                    dropout=0.3), 13)
    opt = build_optimizer(model, 1e-2, 0.1, (0.9, 0.99), CPU)
    return model, opt, build_scheduler(opt, 1e-2, 1e-3, 3, 20), WindowSampler(STREAM, 8, 4, 2, seed=5)


def run_steps(model, opt, sched, sampler, n):
    losses = []
    for _ in range(n):
        loss, _ = train_step(model, sampler.next_step(), lambda m, b: m(b[0], b[1])[1], opt, sched, 1.0, CPU, "fp32")
        losses.append(loss.item())
    return losses


def test_rng_state_round_trip():
    state = rng_state(CPU)
    a = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(state, CPU)
    b = (random.random(), float(np.random.rand()), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_checkpoint_resumes_bit_for_bit_with_dropout(tmp_path):
    run = RunDir(tmp_path)
    model, opt, sched, sampler = setup()
    run_steps(model, opt, sched, sampler, 4)
    save_checkpoint(run, 4, model, opt, sched, {"sampler": sampler.state_dict()}, DistInfo(), CPU)
    expected = run_steps(model, opt, sched, sampler, 5)
    final = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2, sched2, sampler2 = setup(seed=123)  # different init, RNG and data position
    step, extras = load_checkpoint(run, model2, opt2, sched2, DistInfo(), CPU)
    sampler2.load_state_dict(extras["sampler"])
    assert step == 4 and run.model.is_file()
    assert run_steps(model2, opt2, sched2, sampler2, 5) == expected
    assert all(torch.equal(final[k], v) for k, v in model2.state_dict().items())


def test_a_kill_in_the_middle_of_moving_a_checkpoint_into_place_is_recovered(tmp_path, monkeypatch):
    import seqlab.checkpoint as checkpoint

    run = RunDir(tmp_path)
    model, opt, sched, sampler = setup()
    save_checkpoint(run, 4, model, opt, sched, {}, DistInfo(), CPU)
    run_steps(model, opt, sched, sampler, 2)
    real_replace = os.replace

    def dies_after_first_move(src, dst):
        if str(dst) == str(tmp_path / "trainer_state.json"):
            raise KeyboardInterrupt  # the process dies between moving the tensors and the JSON into place
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", dies_after_first_move)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(run, 6, model, opt, sched, {}, DistInfo(), CPU)
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert has_checkpoint(run)  # new tensors + old JSON in place, the new JSON still pending
    step, _ = load_checkpoint(run, *setup()[:3], DistInfo(), CPU)
    assert step == 6 and not (tmp_path / "trainer_state_next.json").exists()


def test_an_incomplete_pending_checkpoint_is_dropped(tmp_path):
    run = RunDir(tmp_path)
    model, opt, sched, _ = setup()
    save_checkpoint(run, 4, model, opt, sched, {}, DistInfo(), CPU)
    (tmp_path / "trainer_state_next.safetensors").write_bytes(b"half a file")  # killed while writing
    step, _ = load_checkpoint(run, *setup()[:3], DistInfo(), CPU)
    assert step == 4 and not (tmp_path / "trainer_state_next.safetensors").exists()


def test_a_damaged_pending_checkpoint_is_not_a_checkpoint(tmp_path, capsys):
    run = RunDir(tmp_path)
    model, opt, sched, _ = setup()
    save_checkpoint(run, 4, model, opt, sched, {}, DistInfo(), CPU)
    for suffix in (".json", ".safetensors"):  # the only checkpoint is a pending one
        os.replace(tmp_path / f"trainer_state{suffix}", tmp_path / f"trainer_state_next{suffix}")
    assert has_checkpoint(run)  # complete: loading will move it into place
    pending = (tmp_path / "trainer_state_next.safetensors").read_bytes()
    (tmp_path / "trainer_state_next.safetensors").write_bytes(pending[:len(pending) // 2])
    assert not has_checkpoint(run)
    with pytest.raises(SeqlabError, match="no checkpoint state"):
        load_checkpoint(run, *setup()[:3], DistInfo(), CPU)
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("seqlab: warning: discarding the damaged pending checkpoint") and "truncated" in warning
    assert not list(tmp_path.glob("trainer_state*"))
