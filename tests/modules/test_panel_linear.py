"""seqlab's fp32 panel kernel (modules/panel_linear.cpp) against torch's product, and Linear's use of it."""

import pytest
import torch
import torch.nn.functional as F

from seqlab.modules import cpu_kernels
from seqlab.modules import linear as linear_module
from seqlab.modules.linear import PANEL_ROWS, Linear

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="seqlab's CPU kernels need an AVX2 CPU and a compiler")


def panel_linear(x, weight, bias):
    panels = torch.ops.seqlab_cpu.pack_panels(weight)
    return torch.ops.seqlab_cpu.panel_linear(x, panels, bias, weight.shape[0])


@pytest.mark.parametrize("rows", [0, 1, 2, 5, 6, 7, 13, 64])
@pytest.mark.parametrize(("out_features", "in_features"), [(1, 1), (15, 7), (16, 384), (17, 33), (2000, 384), (384, 1536)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_panel_linear_is_the_product(rows, out_features, in_features, with_bias):
    """Every tile size (6 rows and the rest), full and partial panels of 16, against the float64 product."""
    g = torch.Generator().manual_seed(rows * 1000 + out_features + in_features)
    x = torch.randn(rows, in_features, generator=g)
    weight = torch.randn(out_features, in_features, generator=g)
    bias = torch.randn(out_features, generator=g) if with_bias else None
    y = panel_linear(x, weight, bias)
    expected = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert y.shape == (rows, out_features) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5 * in_features ** 0.5)


def test_panels_hold_the_weight_k_major_and_zero_padded():
    weight = torch.arange(20 * 3, dtype=torch.float32).view(20, 3)  # (N, K)
    panels = torch.ops.seqlab_cpu.pack_panels(weight)  # (2, 3, 16)
    assert panels.shape == (2, 3, 16)
    assert torch.equal(panels[0], weight[:16].t()) and torch.equal(panels[1, :, :4], weight[16:].t())
    assert not panels[1, :, 4:].any()


def test_rows_do_not_depend_on_each_other():
    """A serving batch: a row's result is the one it gets alone (each output is its own sum)."""
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(13, 384, generator=g), torch.randn(1152, 384, generator=g)
    together = panel_linear(x, weight, None)
    for m in (0, 5, 6, 12):
        assert torch.equal(panel_linear(x[m:m + 1], weight, None)[0], together[m])


def test_bad_inputs_are_one_line_errors():
    weight = torch.randn(32, 8)
    panels = torch.ops.seqlab_cpu.pack_panels(weight)
    with pytest.raises(RuntimeError, match="x has 9 features, the panels 8"):
        torch.ops.seqlab_cpu.panel_linear(torch.randn(2, 9), panels, None, 32)
    with pytest.raises(RuntimeError, match="cannot hold 40 outputs"):
        torch.ops.seqlab_cpu.panel_linear(torch.randn(2, 8), panels, None, 40)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.seqlab_cpu.pack_panels(weight.double())


def test_the_ops_pass_torch_opcheck():
    """Schemas and shape functions as the compiled decode step uses them."""
    x, weight, bias = torch.randn(3, 40), torch.randn(24, 40), torch.randn(24)
    torch.library.opcheck(torch.ops.seqlab_cpu.pack_panels.default, (weight,))
    panels = torch.ops.seqlab_cpu.pack_panels(weight)
    torch.library.opcheck(torch.ops.seqlab_cpu.panel_linear.default, (x, panels, bias, 24))


def test_linear_uses_the_panels_for_few_rows_only(monkeypatch):
    layer = Linear(96, 48).eval()
    calls = []
    real = layer._panel_product
    monkeypatch.setattr(layer, "_panel_product", lambda x: calls.append(x.shape) or real(x))
    with torch.no_grad():
        few = layer(torch.randn(2, 32, 96))  # 64 rows
        many = layer(torch.randn(PANEL_ROWS + 1, 96))
    assert calls == [(2, 32, 96)] and few.shape == (2, 32, 48) and many.shape == (PANEL_ROWS + 1, 48)
    layer.train()
    x = torch.randn(3, 96)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # training: F.linear, bit for bit
    assert calls == [(2, 32, 96)]


@pytest.mark.parametrize("rows", [1, 8, 40])
def test_forward_act_takes_the_same_path_as_forward(rows, monkeypatch):
    """The MLP's first product (Linear + GELU) runs on the panels wherever forward's would, weight small or not."""
    layer = Linear(64, 256).eval()
    calls = []
    real = layer._panel_product
    monkeypatch.setattr(layer, "_panel_product", lambda x: calls.append(x.shape) or real(x))
    x = torch.randn(rows, 64)
    with torch.no_grad():
        y = layer.forward_act(x, "gelu_new")
    assert calls == [(rows, 64)]
    torch.testing.assert_close(y, F.gelu(F.linear(x, layer.weight, layer.bias), approximate="tanh"), rtol=1e-5, atol=1e-5)


def test_the_panel_copy_follows_the_weight():
    torch.manual_seed(0)
    layer = Linear(64, 40).eval()
    x = torch.randn(4, 64)
    with torch.no_grad():
        layer(x)
        layer.weight.mul_(-2)  # in place: the version counter moves
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
        layer.load_state_dict(Linear(64, 40).state_dict())
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    assert "_panels" not in layer.__getstate__()


def test_the_switch_turns_the_panels_off(monkeypatch):
    monkeypatch.setattr(linear_module, "_PANELS_ENABLED", False)
    layer = Linear(64, 40).eval()
    with torch.no_grad():
        layer(torch.randn(2, 64))
    assert layer._panels is None


def test_a_frozen_compiled_graph_folds_the_packing():
    """The compiled decode step's setting (Inductor freezing): the panels become a constant, the product runs
    on the kernel, and the numbers are the eager ones."""
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    torch.manual_seed(0)
    layer = Linear(384, 1152).eval()
    x = torch.randn(4, 384)
    torch._dynamo.reset()
    with torch.no_grad(), inductor_config.patch(freezing=True):
        compiled, (code,) = run_and_get_code(torch.compile(layer), x)
    assert "seqlab_cpu.panel_linear" in code and "pack_panels" not in code
    torch.testing.assert_close(compiled, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
