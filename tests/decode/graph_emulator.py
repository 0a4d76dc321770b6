"""A CPU stand-in for CUDA graphs, so the GPU fast path's own code (seqlab.decode.graphs.CapturedStep)
runs in CI: `EmulatedCuda` replaces `torch.cuda`'s streams and graphs for a `CapturedStep` subclass.

What a CUDA graph does, and what the emulator does the same way:
- capture records the kernels of one call and *runs nothing*: the recorder (a TorchDispatchMode) logs
  every aten op with its arguments while running it, then restores every tensor the ops wrote that
  existed before, so the call leaves no trace;
- replay runs the same ops on the same tensors with the same non-tensor arguments: Python between
  them (host ints, attribute assignments, list appends) is not run again, and a host value the
  recorded call read is frozen at its recorded value; results of ops land in the tensors recorded
  for them (a graph's memory pool keeps their addresses), so a view of one sees the new values;
- reading a device value on the host (`.item()`, `bool(t)`, `.tolist()`) during capture is an error,
  as a stream sync is under capture.
It does not model RNG state inside a graph (seqlab draws its random numbers outside) or host-to-device
copies (none on a CPU).
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from seqlab.decode import GenerateOutput, generate
from seqlab.decode.graphs import CapturedStep

SYNC = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default}


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, Any]] = []
        self.saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # written tensors' contents before capture
        self.made: set[int] = set()  # ids of tensors the recorded ops made

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNC:
            raise RuntimeError("operation not permitted when stream is capturing (a host read of a device value)")
        for i, arg in enumerate(func._schema.arguments):
            info = arg.alias_info
            value = kwargs.get(arg.name) if arg.kwarg_only else (args[i] if i < len(args) else None)
            if info is not None and info.is_write and isinstance(value, torch.Tensor):
                base = value if value._base is None else value._base  # a write through a view writes its base
                if id(base) not in self.made and id(base) not in self.saved:
                    self.saved[id(base)] = (base, base.clone())
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        self.made.update(id(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        return out

    def restore(self) -> None:
        for tensor, before in self.saved.values():
            tensor.copy_(before)


class EmulatedGraph:
    def __init__(self) -> None:
        self.ops: list[tuple[Any, tuple, dict, Any]] | None = None
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        for func, args, kwargs, out in self.ops:
            if func.is_view:  # its recorded output aliases the live input
                continue
            result = func(*args, **kwargs)
            if func._schema.is_mutable:  # wrote into its arguments, as the recorded kernel does
                continue
            for recorded, new in zip(tree_flatten(out)[0], tree_flatten(result)[0], strict=True):
                if isinstance(recorded, torch.Tensor):
                    recorded.copy_(new)


class _Stream:
    def wait_stream(self, other: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass


class EmulatedCuda:
    """The part of `torch.cuda` that CapturedStep uses."""

    Stream = _Stream
    CUDAGraph = EmulatedGraph

    @staticmethod
    def current_stream() -> _Stream:
        return _Stream()

    @staticmethod
    def stream(stream: _Stream) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @staticmethod
    @contextlib.contextmanager
    def graph(graph: EmulatedGraph):
        recorder = _Recorder()
        try:
            with recorder:
                yield
        finally:
            recorder.restore()  # capture runs nothing
        graph.ops = recorder.ops


class EmulatedStep(CapturedStep):
    """CapturedStep with its graphs recorded and replayed on the CPU; `instances` are the ones generate() made."""

    runtime = EmulatedCuda
    instances: list[EmulatedStep] = []

    def __init__(self, model: Any, compiled: bool = False):
        super().__init__(model, compiled)
        EmulatedStep.instances.append(self)

    @property
    def replays(self) -> int:
        return sum(r.graph.replays for r in self.recordings.values() if r.graph is not None)


def generate_both(model: Any, input_ids: torch.Tensor, fast: dict | None = None,
                  **options: Any) -> tuple[GenerateOutput, GenerateOutput, EmulatedStep]:
    """generate() on the plain loop (model.step, the choice on the host), then on the GPU fast path with
    emulated graphs, a failed capture an error (plus the `fast` options); returns (plain, fast, its step)."""
    module = importlib.import_module("seqlab.decode.generate")  # the module, not the function it exports
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "use_fast_path", lambda *args: False)
        plain = generate(model, input_ids, **options)
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.filterwarnings("error", message="CUDA graph capture failed")  # no silent fallback
        patch.setattr(module, "use_fast_path", lambda *args: True)
        patch.setattr(module, "CapturedStep", EmulatedStep)
        EmulatedStep.instances.clear()
        out = generate(model, input_ids, **options, **(fast or {}))
    return plain, out, EmulatedStep.instances[-1]
