import copy

import pytest
import torch
import torch.nn.functional as F

from seqlab.modules import linear as linear_module
from seqlab.modules.linear import MIN_PACKED, MIN_PACKED_ROWS, Linear, packed_linear_available

pytestmark = pytest.mark.skipif(not packed_linear_available(), reason="torch without oneDNN")


@pytest.fixture
def onednn_only(monkeypatch):
    """Products of a few rows take seqlab's panel kernel where it is built (test_panel_linear.py): off here."""
    monkeypatch.setattr(linear_module, "_PANELS_ENABLED", False)


def big_linear(seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    return Linear(512, 768)  # 393,216 weights >= MIN_PACKED


def test_eval_no_grad_uses_the_packed_weight_and_matches_f_linear(onednn_only):
    layer = big_linear().eval()
    x = torch.randn(3, 5, 512)  # (B, T, in)
    with torch.no_grad():
        y = layer(x)  # (B, T, out)
    assert layer._packed is not None
    assert y.shape == (3, 5, 768)
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)


def test_training_and_autograd_keep_f_linear_bit_for_bit():
    layer = big_linear()
    x = torch.randn(4, 512)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # train mode
    layer.eval()
    y = layer(x)  # eval, but autograd on
    assert y.requires_grad and torch.equal(y, F.linear(x, layer.weight, layer.bias))
    assert layer._packed is None


def test_the_packed_copy_follows_weight_updates_and_loading(onednn_only):
    layer = big_linear()
    x = torch.randn(2, 512)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().sum().backward()
    layer.eval()
    with torch.no_grad():
        layer(x)
        optimizer.step()  # in-place update: the autograd version counter moves
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
        layer.load_state_dict(big_linear(seed=1).state_dict())
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)


def test_state_dict_deepcopy_and_small_weights_are_plain(onednn_only):
    layer = big_linear().eval()
    with torch.no_grad():
        layer(torch.randn(1, 512))
    assert set(layer.state_dict()) == {"weight", "bias"}
    clone = copy.deepcopy(layer)  # oneDNN tensors cannot be deep-copied: the cache is dropped
    assert clone._packed is None and torch.equal(clone.weight, layer.weight)
    small = Linear(64, 64).eval()
    assert small.weight.numel() < MIN_PACKED
    with torch.no_grad():
        small(torch.randn(1, 64))
    assert small._packed is None


@pytest.mark.skipif(not packed_linear_available(), reason="torch without oneDNN")
def test_small_weights_are_packed_for_many_rows():
    """A prefill's hundreds of rows: oneDNN whatever the weight's size, with F.linear's numbers."""
    small = Linear(64, 48).eval()
    x = torch.randn(MIN_PACKED_ROWS, 64)
    with torch.no_grad():
        y = small(x)
    assert small._packed is not None
    torch.testing.assert_close(y, torch.nn.functional.linear(x, small.weight, small.bias), atol=1e-5, rtol=1e-5)


def test_the_switch_turns_the_path_off(monkeypatch, onednn_only):
    monkeypatch.setattr(linear_module, "_ENABLED", False)
    layer = big_linear().eval()
    x = torch.randn(1, 512)
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert layer._packed is None


@pytest.mark.parametrize("panels", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "relu"])
def test_fused_activation_matches_the_unfused_one(activation, panels, monkeypatch):
    from seqlab.modules.linear import FUSABLE

    monkeypatch.setattr(linear_module, "_PANELS_ENABLED", panels)
    layer = big_linear()
    x = torch.randn(2, 3, 512)
    act = FUSABLE[activation][2]
    assert torch.equal(layer.forward_act(x, activation), act(F.linear(x, layer.weight, layer.bias)))  # training
    layer.eval()
    with torch.no_grad():
        fused = layer.forward_act(x, activation)
    torch.testing.assert_close(fused, act(F.linear(x, layer.weight, layer.bias)), atol=1e-5, rtol=1e-5)


def test_a_plain_torch_compile_of_an_inference_model_works():
    """Without Inductor's freezing the weight is no constant, so the packed product cannot be lowered: F.linear."""
    layer = big_linear().eval()
    x = torch.randn(2, 512)
    with torch.no_grad():
        compiled = torch.compile(layer)(x)
    torch.testing.assert_close(compiled, F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
