import math

import pytest
import torch

from seqlab.checkpoint import load_state, save_state
from seqlab.train.optim import WarmupCosine, build_optimizer, build_scheduler


def test_weight_decay_only_on_matrices():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.99), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.dim() for p in decay["params"]} == {2} and len(decay["params"]) == 2  # embedding + linear weight
    assert {p.dim() for p in no_decay["params"]} == {1} and len(no_decay["params"]) == 3  # bias, LN gain and bias
    assert opt.defaults["betas"] == (0.9, 0.99)


def nanogpt_lr(it: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """The schedule written out independently (nanoGPT's get_lr shape)."""
    if it < warmup:
        return lr * (it + 1) / warmup
    if it >= total:
        return min_lr
    ratio = (it - warmup) / (total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_schedule_matches_warmup_cosine_formula():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer(torch.nn.ParameterList([p]), 1e-3, 0.0, (0.9, 0.99), torch.device("cpu"))
    sched = build_scheduler(opt, lr=1e-3, min_lr=1e-4, warmup_steps=10, total_steps=100)
    seen = []
    for _ in range(120):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [nanogpt_lr(i, 1e-3, 1e-4, 10, 100) for i in range(120)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert seen[9] == pytest.approx(1e-3) and seen[55] == pytest.approx(5.5e-4) and seen[110] == pytest.approx(1e-4)


def test_scheduler_state_round_trips_through_a_checkpoint(tmp_path):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = build_scheduler(opt, lr=1.0, min_lr=0.1, warmup_steps=5, total_steps=50)
    for _ in range(7):
        opt.step()
        sched.step()
    save_state(tmp_path / "s", sched.state_dict())
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1.0)
    sched2 = build_scheduler(opt2, lr=1.0, min_lr=0.1, warmup_steps=5, total_steps=50)
    sched2.load_state_dict(load_state(tmp_path / "s"))
    assert sched2.last_epoch == 7 and sched2.get_last_lr() == sched.get_last_lr()


def test_warmup_cosine_zero_warmup_starts_at_peak():
    f = WarmupCosine(0, 10, 0.1)
    assert f(0) == pytest.approx(1.0) and f(10) == pytest.approx(0.1) and f(5) == pytest.approx(0.55)
