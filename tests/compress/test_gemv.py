"""seqlab's int8 kernels (seqlab.compress.gemv): the weight-only product of a few rows against the dequantized
fp32 product computed by torch, the dynamic (W8A8) product against the same quantization computed by torch;
both inside Int8Linear and inside the compiled decode step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.compress import gemv
from seqlab.compress.quantize import Int8Linear, quantize_model, quantize_per_channel

needs_kernel = pytest.mark.skipif(not gemv.available(), reason="seqlab's int8 kernel needs an AVX2 CPU and a compiler")


def _reference(x, q, scale, bias):
    """F.linear on the dequantized weight, in float64 (the kernel's only other rounding is x's, to 16 bits)."""
    y = F.linear(x.double(), (q.double() * scale.double()[:, None]))
    return y if bias is None else y + bias.double()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 8])
@pytest.mark.parametrize(("n", "k"), [(4, 32), (37, 384), (130, 33), (5, 7), (64, 4100)])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_equals_the_dequantized_product_up_to_xs_16_bit_rounding(rows, n, k, bias):
    g = torch.Generator().manual_seed(rows * 1000 + n + k)
    q, scale = quantize_per_channel(torch.randn(n, k, generator=g))
    b = torch.randn(n, generator=g) if bias else None
    x = torch.randn(rows, k, generator=g) * 3
    y = torch.ops.seqlab_cpu.int8_gemv(x, q, scale, b)
    reference = _reference(x, q, scale, b)
    # x[m, k] is off by at most half a step of max|x[m]| / 32767; the sum adds k such errors, each times |w|
    bound = (x.abs().amax(1, keepdim=True).double() / 32767 / 2) * (q.abs().double() * scale[:, None].double()).sum(1) + 1e-4
    assert y.dtype == torch.float32 and y.shape == (rows, n)
    assert ((y.double() - reference).abs() <= bound * 1.01 + 1e-5 * reference.abs()).all()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 3, 4, 8])
@pytest.mark.parametrize(("n", "k"), [(4, 32), (37, 384), (130, 33), (5, 7), (64, 4100), (9, 1536)])
@pytest.mark.parametrize("bias", [True, False])
def test_the_a8_kernel_equals_torchs_product_of_x_quantized_per_row_to_int8(rows, n, k, bias):
    g = torch.Generator().manual_seed(rows * 1000 + n + k + 7)
    q, scale = quantize_per_channel(torch.randn(n, k, generator=g))
    b = torch.randn(n, generator=g) if bias else None
    x = torch.randn(rows, k, generator=g) * 3
    x[0, : k // 2] = 0.01 * x[0, : k // 2]  # small values next to large ones round to few levels
    y = torch.ops.seqlab_cpu.int8_gemv_a8(x, q, scale, b)
    step = x.abs().amax(1, keepdim=True) / 127  # (rows, 1), float32 as in the kernel
    xq = torch.round(x * (1 / step))  # (rows, k): x times the step's inverse, rounded half to even (vcvtps2dq)
    assert xq.abs().max() <= 127
    sums = xq.double() @ q.double().T  # (rows, n): the kernel's int32 sums are exact
    reference = sums * step.double() * scale.double()
    reference = reference if b is None else reference + b.double()
    assert y.dtype == torch.float32 and y.shape == (rows, n)
    # what is left is float32 rounding of the scaling, about 3 ulps of the largest term
    scale_of = (sums.abs() * step.double() * scale.double()).amax() + (0 if b is None else b.abs().max())
    assert ((y.double() - reference).abs() <= 4e-7 * scale_of + 1e-7).all()


@needs_kernel
@pytest.mark.parametrize("op", ["int8_gemv", "int8_gemv_a8"])
def test_a_rows_result_does_not_depend_on_the_other_rows(op):
    q, scale = quantize_per_channel(torch.randn(96, 256))
    x = torch.randn(6, 256)
    product = getattr(torch.ops.seqlab_cpu, op)
    together = product(x, q, scale, None)
    for m in range(6):
        assert torch.equal(product(x[m:m + 1], q, scale, None)[0], together[m])


@needs_kernel
@pytest.mark.parametrize(("op", "tolerance"), [("int8_gemv", 1e-3), ("int8_gemv_a8", 0.05)])
def test_rows_holding_inf_or_nan_give_what_float_gives_and_zero_rows_give_the_bias(op, tolerance):
    q, scale = quantize_per_channel(torch.randn(8, 64))
    bias = torch.randn(8)
    x = torch.randn(4, 64)
    x[1, 5], x[2, 0], x[3] = float("nan"), float("inf"), 0.0
    y = getattr(torch.ops.seqlab_cpu, op)(x, q, scale, bias)
    reference = F.linear(x, q.float() * scale[:, None], bias)
    torch.testing.assert_close(y[0], reference[0], rtol=tolerance, atol=tolerance)
    assert y[1].isnan().all()
    assert torch.equal(y[2].isinf(), reference[2].isinf()) and torch.equal(y[2].isnan(), reference[2].isnan())
    assert torch.equal(y[3], bias)


@needs_kernel
@pytest.mark.parametrize("op", ["int8_gemv", "int8_gemv_a8"])
def test_the_op_passes_torch_opcheck_and_rejects_wrong_inputs_in_one_line(op):
    q, scale = quantize_per_channel(torch.randn(16, 64))
    x = torch.randn(2, 64)
    product = getattr(torch.ops.seqlab_cpu, op)
    torch.library.opcheck(product.default, (x, q, scale, None))
    with pytest.raises(RuntimeError, match=f"{op}: weight must be"):
        product(x, q.float(), scale, None)
    with pytest.raises(RuntimeError, match=f"{op}: x must be"):
        product(x.double(), q, scale, None)


@needs_kernel
@pytest.mark.parametrize(("method", "kernel"), [("weight-only", "int8_gemv"), ("dynamic", "int8_gemv_a8")])
def test_int8_linear_uses_its_kernel_for_a_few_rows_and_its_other_product_for_more(monkeypatch, method, kernel):
    """weight-only: the dequantized product beyond 8 rows; dynamic: fbgemm's (x quantized to 7 bits)."""
    from seqlab.compress import quantize

    layer = Int8Linear(*quantize_per_channel(torch.randn(48, 96)), torch.randn(48), method).eval()
    calls = []
    real = getattr(gemv, kernel)
    monkeypatch.setattr(gemv, kernel, lambda *a: calls.append(a[0].shape) or real(*a))
    x = torch.randn(3, 4, 96)
    with torch.no_grad():
        few = layer(x[:2])  # 8 rows
        many = layer(x)  # 12 rows
    assert calls == [(2, 4, 96)] and few.shape == (2, 4, 48) and many.shape == (3, 4, 48)
    if method == "weight-only" or quantize._fbgemm_usable(x):  # equal up to x's rounding
        torch.testing.assert_close(few, many[:2], rtol=0, atol=0.05 * float(many.abs().max()))


def test_without_the_kernel_weight_only_computes_the_same_product(monkeypatch):
    layer = Int8Linear(*quantize_per_channel(torch.randn(40, 72)), torch.randn(40), "weight-only").eval()
    x = torch.randn(3, 72)
    with torch.no_grad():
        fast = layer(x)
        monkeypatch.setenv("SEQLAB_INT8_GEMV", "0")
        assert not gemv.available()
        slow = layer(x)
    torch.testing.assert_close(fast, slow, rtol=1e-3, atol=1e-3)


@needs_kernel
@pytest.mark.parametrize("method", ["weight-only", "dynamic"])
def test_compiled_decoding_of_an_int8_model_chooses_the_eager_tokens(method):
    from seqlab.decode import generate
    from seqlab.decode.compiled import can_compile
    from seqlab.models.transformer_lm import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(50, n_layer=2, n_head=2, n_embd=64, context_length=64, dropout=0.0).eval()
    quantize_model(model, method)
    if not can_compile(model):
        pytest.skip("no compiled step here")
    prompt = torch.randint(5, 50, (1, 6))
    kw = dict(max_new_tokens=12, min_new_tokens=12, eos_token_id=2, pad_token_id=0, seed=0)
    eager = generate(model, prompt, **kw)
    compiled = generate(model, prompt, compile_step=True, **kw)
    assert torch.equal(compiled.sequences, eager.sequences)
    beams = [generate(model, prompt, num_beams=4, compile_step=c, **kw).sequences for c in (False, True)]
    assert torch.equal(beams[0], beams[1])
