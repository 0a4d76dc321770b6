"""A compiled graph called again without Dynamo: the function Inductor made, its arguments rebuilt from the
call's tensors.

Every call of a `torch.compile`d function enters Dynamo: it looks the frame up in its cache (even with
`skip_guard_eval_unsafe`), runs the bytecode that gathers the graph's arguments — tensors, and the sizes
and strides it took as symbols — and then calls AOTAutograd's wrapper around Inductor's function. On a
small decode step that is 0.4–0.6 ms of a ~3 ms step (GPT-2 6 x 384, 2 cores; docs/benchmarks.md). A
`Replay` keeps the function Inductor returned at the first call and calls it directly:

    with capturing() as graphs:             # the first call, through Dynamo, compiles (or finds) the graph
        out = compiled(*inputs)             # (torch.compile(..., backend=inductor_backend))
    replay = Replay.from_capture(graphs, inputs, out)   # None when the call cannot be replayed
    out = replay(*new_inputs)               # later calls: Inductor's function on the new inputs

Dynamo's graph takes, in its own order, (a) tensors the function was called with, (b) tensors it reached
through attributes (a model's weights and buffers, a processor's token ids: fixed) and (c) sizes and
strides of (a) it took as symbols (a KV-cache window's length, and the strides that follow). At the
capture each graph input is matched to one of these: (a) and (b) by identity, (c) by its symbol (a
size or stride of an (a) tensor holding that symbol); a replay takes (a) from its own inputs, (b) as
captured, (c) from its new tensors. Anything else — a graph break (several graphs), a call that found
its graph in Dynamo's cache (nothing captured), an input no rule explains, outputs other than the one
tensor returned — and there is no replay: the caller goes on calling through Dynamo.

A replay checks no guard: its caller vouches that every call passes tensors of the captured call's
dtypes, devices, strides and shapes (but for the dynamic dimensions), and that grad mode and the
compile options are those of the capture — the contract of one decoding, and of the replays a model
keeps keyed by those properties (seqlab.decode.compiled).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

_LOCAL = threading.local()  # .graphs: the list a `capturing()` block collects into, else absent


def inductor_backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
    """torch.compile's "inductor" backend, also handing what Inductor made to an open `capturing()` block."""
    from torch._inductor.compile_fx import compile_fx

    compiled = compile_fx(gm, example_inputs)
    graphs = getattr(_LOCAL, "graphs", None)
    if graphs is not None:
        graphs.append((gm, list(example_inputs), compiled))
    return compiled


@contextlib.contextmanager
def capturing() -> Iterator[list]:
    """Collect (graph, example inputs, compiled function) of every graph compiled in this thread in the block."""
    previous = getattr(_LOCAL, "graphs", None)
    _LOCAL.graphs = graphs = []
    try:
        yield graphs
    finally:
        _LOCAL.graphs = previous


class Replay:
    """Inductor's function for one captured graph, called with arguments rebuilt by `recipe`: per graph input,
    ("input", i) the i-th tensor passed, ("fixed", tensor), ("size" | "stride", i, dim) of the i-th tensor."""

    def __init__(self, compiled: Callable, recipe: list[tuple]):
        self.compiled, self.recipe = compiled, recipe

    @classmethod
    def from_capture(cls, graphs: list, inputs: Sequence[Any], out: Any) -> Replay | None:
        """The replay of the one graph a call compiled with `inputs` (flat: tensors and lists of tensors) and
        returned `out`, or None (see the module docstring)."""
        if len(graphs) != 1 or not isinstance(out, Tensor):
            return None
        gm, examples, compiled = graphs[0]
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        outputs = gm.graph.find_nodes(op="output")[0].args[0]
        if len(placeholders) != len(examples) or not isinstance(outputs, (tuple, list)) or len(outputs) != 1:
            return None
        flat = flatten(inputs)
        position = {id(t): i for i, t in enumerate(flat)}
        symbols: dict[Any, tuple] = {}  # a symbol -> ("size" | "stride", input index, dim) of a tensor passed in
        for node, example in zip(placeholders, examples, strict=True):
            fake = node.meta.get("example_value")
            if isinstance(example, Tensor) and id(example) in position and isinstance(fake, Tensor):
                i = position[id(example)]
                for kind, values in (("size", fake.shape), ("stride", fake.stride())):
                    for dim, value in enumerate(values):
                        if isinstance(value, torch.SymInt):
                            symbols.setdefault(value.node.expr, (kind, i, dim))
        recipe: list[tuple] = []
        for node, example in zip(placeholders, examples, strict=True):
            fake = node.meta.get("example_value")
            if isinstance(example, Tensor):
                recipe.append(("input", position[id(example)]) if id(example) in position else ("fixed", example))
            elif isinstance(fake, torch.SymInt) and fake.node.expr in symbols:
                recipe.append(symbols[fake.node.expr])
            else:
                return None
        return cls(compiled, recipe)

    def __call__(self, *inputs: Any) -> Tensor:
        flat = flatten(inputs)
        args = []
        for how in self.recipe:
            kind = how[0]
            if kind == "input":
                args.append(flat[how[1]])
            elif kind == "fixed":
                args.append(how[1])
            elif kind == "size":
                args.append(flat[how[1]].size(how[2]))
            else:
                args.append(flat[how[1]].stride(how[2]))
        return self.compiled(*args)[0]


def flatten(inputs: Sequence[Any]) -> list:
    """The call's inputs with lists and tuples (a model's per-layer buffers) spliced in, in order."""
    flat: list = []
    for x in inputs:
        if isinstance(x, (list, tuple)):
            flat.extend(x)
        else:
            flat.append(x)
    return flat
