import copy

import pytest
import torch
from tiny_setup import one_thread  # noqa: F401 - fixture

from seqlab.config import ModelConfig
from seqlab.models import build_model
from seqlab.train.optim import build_optimizer, build_scheduler
from seqlab.train.step import autocast, resolve_precision, train_step

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_lm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=16, context_length=8), 11)


def lm_loss(model, batch):
    return model(batch[0], batch[1])[1]


def optimizer_and_scheduler(model):
    opt = build_optimizer(model, 1e-2, 0.1, (0.9, 0.99), CPU)
    return opt, build_scheduler(opt, 1e-2, 1e-3, 2, 10)


def test_accumulated_micro_batches_equal_one_batch():
    x = torch.randint(11, (8, 8), generator=torch.Generator().manual_seed(1))
    y = torch.randint(11, (8, 8), generator=torch.Generator().manual_seed(2))
    a, b = tiny_lm(), tiny_lm()
    loss_a, _ = train_step(a, [(x, y)], lm_loss, *optimizer_and_scheduler(a), 0.0, CPU, "fp32")
    loss_b, _ = train_step(b, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)], lm_loss,
                           *optimizer_and_scheduler(b), 0.0, CPU, "fp32")
    torch.testing.assert_close(loss_a, loss_b)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)


def test_clipping_uses_the_global_norm_and_returns_it():
    x = torch.randint(11, (4, 8))
    model, ref = tiny_lm(), tiny_lm()
    opt, sched = optimizer_and_scheduler(model)
    _, norm = train_step(model, [(x, x)], lm_loss, opt, sched, 0.01, CPU, "fp32")
    lm_loss(ref, (x, x)).backward()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ref.parameters()]))
    torch.testing.assert_close(norm, expected)
    assert all(p.grad is None for p in model.parameters())  # zeroed for the next step
    assert sched.last_epoch == 1


def test_bf16_autocast_trains_on_cpu():
    model = tiny_lm()
    before = copy.deepcopy(model.state_dict())
    x = torch.randint(11, (4, 8))
    loss, _ = train_step(model, [(x, x)], lm_loss, *optimizer_and_scheduler(model), 1.0, CPU, "bf16")
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    with autocast(CPU, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.parametrize(("precision", "device", "expected"),
                         [("auto", "cpu", "fp32"), ("auto", "cuda", "bf16"), ("fp32", "cuda", "fp32"), ("bf16", "cpu", "bf16")])
def test_precision_resolution(precision, device, expected):
    assert resolve_precision(precision, torch.device(device)) == expected
