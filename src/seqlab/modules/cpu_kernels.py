"""seqlab's C++ kernels for the CPU: one extension, built the first time a process needs it.

    from seqlab.modules import cpu_kernels
    if cpu_kernels.available():             # builds and loads it (once per machine: ~20 s, then cached)
        y = torch.ops.seqlab_cpu.panel_linear(x, torch.ops.seqlab_cpu.pack_panels(w), b, w.shape[0])

The ops (namespace `seqlab_cpu`), each described in its source:
- `pack_panels`, `panel_linear` (modules/panel_linear.cpp): the fp32 product of a few rows, what
  fp32 `seqlab.modules.linear.Linear` decodes with;
- `int8_gemv`, `int8_gemv_a8` (compress/int8_gemv.cpp): int8-weight products of a few rows, what
  int8 runs decode with (`seqlab.compress.gemv`).

The sources are compiled by `torch.utils.cpp_extension` into one library (cached under
`$TORCH_EXTENSIONS_DIR`, by default ~/.cache/torch_extensions) with OpenMP, so `at::parallel_for`
splits a product over torch's threads (`torch.set_num_threads`; the library uses torch's own OpenMP
runtime). Each op has a shape function, so the compiled decode step (`seqlab.decode.compiled`) calls it
from its C++ wrapper. They need an x86 CPU with AVX2 and FMA, a C++ compiler and ninja; without them
`available()` is False and the callers compute the same products with torch's kernels (only speed
changes).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

PACKAGE = Path(__file__).resolve().parent.parent  # src/seqlab
SOURCES = [PACKAGE / "compress" / "int8_gemv.cpp", PACKAGE / "modules" / "panel_linear.cpp"]
CFLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp"]  # OpenMP: at::parallel_for's pragma (torch's libgomp at run time)
NAME = "seqlab_cpu_kernels"

_state: dict[str, bool] = {}  # "loaded": the ops are registered (or "failed": building them failed)
_lock = threading.Lock()


def cpu_supported() -> bool:
    """Whether this CPU runs the kernels: x86 with AVX2 and FMA (ATen's AVX2 level requires both)."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def available(build: bool = True) -> bool:
    """Whether the `seqlab_cpu` ops can be called; with `build`, compile and load them when missing.

    Never raises: a failed build warns once and leaves every product to torch's kernels.
    """
    if _state.get("loaded"):
        return True
    if not build or _state.get("failed") or not cpu_supported():
        return False
    with _lock:
        if not _state.get("loaded") and not _state.get("failed"):
            try:
                _load()
                _state["loaded"] = True
            except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a build error: the fallbacks are exact
                _state["failed"] = True
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                warnings.warn(f"seqlab's CPU kernels could not be built ({first}); products run on torch's "
                              "kernels (slower, same results up to rounding)", stacklevel=3)
    return bool(_state.get("loaded"))


def _load() -> None:
    from torch.utils.cpp_extension import load

    load(name=NAME, sources=[str(s) for s in SOURCES], extra_cflags=CFLAGS, is_python_module=False, verbose=False)
    for op, shape in SHAPES.items():
        if not hasattr(torch.ops.seqlab_cpu, op):
            raise RuntimeError(f"the built library did not register seqlab_cpu::{op}")
        try:
            torch.library.register_fake(f"seqlab_cpu::{op}", shape)
        except RuntimeError:  # registered already (a second load in this process)
            pass


def _int8_product_shape(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


def _panels_shape(weight: Tensor) -> Tensor:
    return weight.new_empty((weight.shape[0] + 15) // 16, weight.shape[1], 16)


def _panel_linear_shape(x: Tensor, panels: Tensor, bias: Tensor | None, out_features: int) -> Tensor:
    return x.new_empty(x.shape[0], out_features)


SHAPES = {"int8_gemv": _int8_product_shape, "int8_gemv_a8": _int8_product_shape,
          "pack_panels": _panels_shape, "panel_linear": _panel_linear_shape}
