"""int8-weight products of a few rows on the CPU: seqlab's own kernels (`int8_gemv.cpp`).

    y = (x q^T) s + b        x (M, K) fp32, M <= GEMV_ROWS;  q (N, K) int8, s (N,) fp32 per output channel

Decoding one token at batch 1 (or a beam of 4) is a chain of such matrix-vector products. PyTorch has no
fast one for int8 weights on a CPU: fbgemm's dynamic product (`quantize.py`'s `dynamic` method) quantizes x
and packs its output per call, ~60-120 us for a 1536 x 384 matrix on a 2-core AVX2 VM, and Inductor's own
loop over an int8 weight loads it in partial vectors through a stack buffer (4x slower than its fp32 loop). The kernel reads each weight row once, widens 16
int8 weights to int16 and multiply-adds them with x rounded per row to int16 (`vpmaddwd`, int32 sums):

    xq[m, k] = round(x[m, k] / sx[m]),   sx[m] = max_k |x[m, k]| / 32767
    y[m, n]  = s[n] sx[m] sum_k xq[m, k] q[n, k] + b[n]

x's rounding (relative 1.5e-5 of the row's largest value) is far below the int8 weight's own (1/254 of
the channel's largest), so the product is the weight-only product up to float rounding; each row is
rounded on its own, so a row's result does not depend on the other rows in the batch.

Measured on the same VM, one row, 1 thread: ~31-37 us per 1536 x 384 call from Python (MKL's fp32
`torch.mv`: ~230 us), ~11 us in a C++ loop (40 GMAC/s); decoding, docs/compress.md.

`int8_gemv_a8` is the dynamic (W8A8) product of the same weights, what the `dynamic` method decodes
with: x quantized per row to int8,

    xq[m, k] = round(x[m, k] / sx[m]),   sx[m] = max_k |x[m, k]| / 127

and multiplied 32 columns per instruction (`vpmaddubsw` of |x| and the weight carrying x's sign, so no
16-bit pair sum can saturate): two thirds of the int16 kernel's instructions per product. x's rounding
is then as coarse as the weight's, the trade `dynamic` makes (and CTranslate2's int8); rows are still
quantized each on its own.

The kernels are built with seqlab's other CPU kernels (`seqlab.modules.cpu_kernels`: once per machine,
OpenMP over torch's threads) and registered as the ops `torch.ops.seqlab_cpu.int8_gemv` and `int8_gemv_a8`,
which the compiled decode step (`seqlab.decode.compiled`) calls from its C++ wrapper. They need an x86 CPU
with AVX2 and FMA, and a C++ compiler and ninja; without them, or with `SEQLAB_INT8_GEMV=0`, `available()`
is False: the `weight-only` method computes as before (`F.linear` on the dequantized weight), which
changes only speed, and `dynamic` uses fbgemm's product for every size (x quantized per call to 7 bits).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from seqlab.modules import cpu_kernels

GEMV_ROWS = 8  # products of up to this many rows use the kernel; more rows run faster as an fp32 GEMM


def available(build: bool = True) -> bool:
    """Whether `torch.ops.seqlab_cpu.int8_gemv` can be called (`SEQLAB_INT8_GEMV=0`: never); with `build`,
    compile and load seqlab's CPU kernels when missing. Never raises (`cpu_kernels.available`)."""
    return os.environ.get("SEQLAB_INT8_GEMV", "1") != "0" and cpu_kernels.available(build)


def usable(x: Tensor, in_features: int) -> bool:
    """Whether the product of x (..., in_features) should go through the kernel: an fp32 CPU tensor of at
    most GEMV_ROWS rows, the kernel loaded (while torch.compile traces, only if it was loaded before)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() > GEMV_ROWS * in_features:
        return False
    return available(build=not torch.compiler.is_compiling())


def int8_gemv(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., K) fp32, weight (N, K) int8, scale (N,), bias (N,) or None -> (..., N) (see the module docstring)."""
    return _rows_product("int8_gemv", x, weight, scale, bias)


def int8_gemv_a8(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    """int8_gemv with x quantized per row to int8 (the dynamic product; see the module docstring)."""
    return _rows_product("int8_gemv_a8", x, weight, scale, bias)


def _rows_product(op: str, x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    rows = x.reshape(-1, x.shape[-1])  # (M, K)
    y = getattr(torch.ops.seqlab_cpu, op)(rows, weight, scale, bias)  # (M, N)
    return y.view(*x.shape[:-1], weight.shape[0])
