"""`Linear`: nn.Linear whose CPU inference runs on oneDNN with a prepacked fp32 weight.

    y = x W^T + b        x (..., in), W (out, in), b (out,)  ->  y (..., out)

Same parameters, state-dict keys and training behaviour as `torch.nn.Linear`. When the module is in
eval mode, autograd is off, and x is an fp32 CPU tensor, the product runs through oneDNN's inner
product on a copy of W reordered once into its blocked layout (`torch.ops.mkldnn`, what Inductor's
CPU freezing uses). Why: decoding one token is a chain of matrix-vector products that only stream
the weights, and oneDNN's blocked kernel streams them faster than MKL's sgemv (what `F.linear`
calls); `bench/decode.py` measures it (docs/benchmarks.md). Results are fp32 with another
summation order: they differ from `F.linear` by rounding (~1e-6 relative), not by precision.

Weights under `MIN_PACKED` elements keep `F.linear` in eager mode for products of fewer than `MIN_PACKED_ROWS`
rows (a frozen graph packs every weight): on those MKL is as fast, on a prefill's hundreds of rows oneDNN is
faster whatever the weight (384 x 384 at 300 rows: 0.70 against 0.97 ms, 2 threads).
The packed copy is rebuilt whenever the weight changes (its storage or its autograd version counter,
so an optimizer step or `load_state_dict` invalidates it). `SEQLAB_PACKED_LINEAR=0` turns the path off
(for comparisons); so does a torch built without oneDNN. `forward_act` fuses the following
activation into the product on the same path. Under `torch.compile` the path is taken only with
Inductor's freezing (`seqlab.decode.compiled`): the reorder is then traced as an op on the weight and
folded into a constant at compile time. A plain `torch.compile(model)` gets `F.linear`, which
Inductor compiles as usual.

Frozen products of at most `REDUCTION_ROWS` rows (a decode step at batch 1, a beam of 4) are instead
written as reductions, one per row m, that Inductor fuses into a single loop over W:

    y[m, o] = sum_i x[m, i] W[o, i] + b[o]        (m < M: M accumulators, each W[o, :] loaded once)

oneDNN and MKL run these skinny products well below the memory's bandwidth; the fused loop streams
W at the memory's speed (`bench/decode.py --compile`). Same fp32 arithmetic, another summation order.

Faster still, products of at most `PANEL_ROWS` rows (a decode step of up to 64 rows: batch 1, a beam, a
serving batch) run on seqlab's own kernel where it is built (`seqlab.modules.cpu_kernels`: an AVX2 CPU and
a compiler): W is packed once into panels of 16 output features stored k-major (`pack_panels`; in a frozen
graph the packing is traced on the weight and folded into a constant, like the oneDNN reorder), which a
thread reads as one sequential stream while tiles of 6 rows of x multiply-add 16 features at a time
(`panel_linear`, modules/panel_linear.cpp). On a 2-core AVX2 VM, the 25 products of a GPT-2-shaped 6 x 384
step took 2.6 / 2.4 / 4.4 ms at 1 / 4 / 16 rows against oneDNN's 4.4 / 3.9 / 6.3 ms (2 threads,
docs/benchmarks.md). `SEQLAB_PANEL_LINEAR=0` turns this path off. The eager path keeps the panels as a
cached copy of W (rebuilt when W changes), beside oneDNN's for prefills: a decoding model holds its
weights up to three times.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.modules import cpu_kernels


def packed_linear_available() -> bool:
    return (os.environ.get("SEQLAB_PACKED_LINEAR", "1") != "0" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


# activation name -> (oneDNN post-op, its algorithm, the same function in torch)
FUSABLE = {"gelu": ("gelu", "none", F.gelu), "gelu_new": ("gelu", "tanh", partial(F.gelu, approximate="tanh")),
           "relu": ("relu", "", F.relu)}
MIN_PACKED = 1 << 18  # weights below 1 MB (fp32) gain nothing: MKL is as fast on them ...
MIN_PACKED_ROWS = 256  # ... unless the product has this many rows (a prefill of a batch of prompts)
PANEL_ROWS = 64  # fp32 inference products of up to this many rows run on seqlab's panel kernel
REDUCTION_ROWS = 8  # without it, frozen products of up to this many rows run as fused reductions (M = 16 gains less, compiles longer)


class Linear(nn.Linear):
    """nn.Linear with a oneDNN fast path for fp32 CPU inference (see the module docstring)."""

    _packed: tuple[tuple[int, int], Tensor] | None = None  # ((data_ptr, version), reordered weight)
    _panels: tuple[tuple[int, int], Tensor] | None = None  # ((data_ptr, version), W packed in panels)

    def forward(self, x: Tensor) -> Tensor:
        if self._use_panels(x):
            return self._panel_product(x)
        if self._use_reduction(x):
            return self._reduction_product(x)
        if not self._use_packed(x):
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), self.bias, "none", [], "")

    def forward_act(self, x: Tensor, activation: str) -> Tensor:
        """act(x W^T + b), act one of FUSABLE; on the packed path oneDNN applies it inside the product."""
        if self._use_panels(x):  # the same path as forward's, then the activation (compiled: fused by Inductor)
            return FUSABLE[activation][2](self._panel_product(x))
        if self._use_reduction(x):
            return FUSABLE[activation][2](self._reduction_product(x))  # Inductor fuses it into the loop
        if not self._use_packed(x):
            return FUSABLE[activation][2](F.linear(x, self.weight, self.bias))
        attr, algorithm, _ = FUSABLE[activation]
        return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), self.bias, attr, [], algorithm)

    def _fp32_cpu_inference(self, x: Tensor) -> bool:
        """Eval mode, no autograd, fp32 on the CPU, and not traced for ONNX (whose graph holds standard ops only)."""
        return (not self.training and not torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == self.weight.dtype == torch.float32
                and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export())

    def _use_packed(self, x: Tensor) -> bool:
        if not (_ENABLED and self._fp32_cpu_inference(x)):
            return False
        if torch.compiler.is_compiling():  # frozen: every size; at 64 rows oneDNN beats MKL even on 384 x 384
            return _freezing()
        return self.weight.numel() >= MIN_PACKED or x.numel() >= MIN_PACKED_ROWS * self.in_features

    def _use_panels(self, x: Tensor) -> bool:
        if not (_PANELS_ENABLED and self._fp32_cpu_inference(x) and x.numel() <= PANEL_ROWS * self.in_features):
            return False
        if torch.compiler.is_compiling():  # only where the packing folds into a constant, and built before
            return _freezing() and cpu_kernels.available(build=False)
        return cpu_kernels.available()

    def _panel_product(self, x: Tensor) -> Tensor:
        """x (..., in) with M <= PANEL_ROWS rows -> (..., out) on seqlab's panel kernel."""
        rows = x.reshape(-1, self.in_features)  # (M, in)
        y = torch.ops.seqlab_cpu.panel_linear(rows, self._panel_weight(), self.bias, self.out_features)  # (M, out)
        return y.view(*x.shape[:-1], self.out_features)

    def _panel_weight(self) -> Tensor:
        """W (out, in) packed in panels (ceil(out / 16), in, 16)."""
        return self._weight_copy("_panels", torch.ops.seqlab_cpu.pack_panels)

    def _use_reduction(self, x: Tensor) -> bool:
        return tracing_frozen() and self._fp32_cpu_inference(x) and x.numel() <= REDUCTION_ROWS * self.in_features

    def _reduction_product(self, x: Tensor) -> Tensor:
        """x (..., in) with M <= REDUCTION_ROWS rows -> (..., out), one fused reduction over W per row (traced only)."""
        rows = x.reshape(-1, self.in_features).contiguous()  # (M, in)
        # as_strided makes Inductor store x once; else it inlines x's producer (a LayerNorm, say) into the loop
        # over W and recomputes it for every output feature
        rows = rows.as_strided(rows.shape, rows.stride())
        y = torch.stack([(row * self.weight).sum(-1) for row in rows.unbind(0)])  # (M, out)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def _packed_weight(self) -> Tensor:
        """W reordered into oneDNN's blocked layout."""
        return self._weight_copy("_packed", torch.ops.mkldnn._reorder_linear_weight)

    def _weight_copy(self, cache: str, make: Any) -> Tensor:
        """make(W), kept in attribute `cache` until W changes (its storage or autograd version counter).
        While compiling it is traced as an op on the weight: frozen, Inductor folds it into a constant."""
        if torch.compiler.is_compiling():
            return make(self.weight)
        key = (self.weight.data_ptr(), self.weight._version)
        cached = getattr(self, cache)
        if cached is None or cached[0] != key:
            cached = (key, make(self.weight.detach()))
            setattr(self, cache, cached)
        return cached[1]

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_packed", None)  # a cache (and oneDNN tensors cannot be pickled or deep-copied)
        state.pop("_panels", None)  # a cache
        return state


_ENABLED = packed_linear_available()
_PANELS_ENABLED = os.environ.get("SEQLAB_PANEL_LINEAR", "1") != "0"


def tracing_frozen() -> bool:
    """Whether Inductor is tracing a graph whose weights it will freeze (the compiled decode step)."""
    return torch.compiler.is_compiling() and _freezing()


def _freezing() -> bool:
    """Whether the graph being traced will be frozen: only then can Inductor lower the packed product
    (it needs the weight as a constant); a plain `torch.compile` of the model gets `F.linear`."""
    import torch._inductor.config as inductor_config

    return bool(inductor_config.freezing)


def _reorder_linear_weight_shape(weight: Tensor, batch_size: int | None = None) -> Tensor:
    return weight.new_empty(weight.shape)  # the reordered copy keeps the logical (out, in) shape


if _ENABLED:  # torch.compile traces the reorder (torch ships no shape function for it), then folds it
    try:
        torch.library.register_fake("mkldnn::_reorder_linear_weight", _reorder_linear_weight_shape)
    except RuntimeError:  # a torch that has one already
        pass

