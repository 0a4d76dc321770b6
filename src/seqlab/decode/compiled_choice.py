"""The CPU fast path's token choice: greedy search's or sampling's `Choice` compiled into one C++ call.

With the decode step compiled (seqlab.decode.compiled), what is left of a token on a CPU is its choice:
log-softmax, the processors (top-k's `topk`, top-p's sort and cumulative sum, ...), the argmax or the
exponential race, and the bookkeeping — 15 to 30 small eager operations, each dispatched from Python,
0.2–0.4 ms per token on a 2-core VM, a large share of an int8 step (~1 ms). Inductor compiles
`Choice.__call__` into one function that `seqlab.decode.replay` calls without Dynamo, so the host's work
per token is two calls: the step's and the choice's (`CompiledStep.advance`).

    choose = CompiledChoice(choice)          # one decoding's `Choice`
    tokens = choose(logits, plan)            # = choice(logits): the same tokens and bookkeeping; the first
                                             # use of a kind of choice compiles it (seconds), later ones replay

One graph per kind of choice, kept for the process: the processors' `graph_key()`s and the plan (which
length-dependent processors act), greedy or sampling, how many EOS ids, rows, vocabulary and dtypes.
Settings are constants of a graph (a new temperature compiles a new one); the prompt length and
`max_new_tokens` are not: the sequences' length is a dynamic size. A choice whose processors read the
tokens, or one without a `graph_key`, or one past `MAX_GRAPHS` kinds, or any with TORCH_COMPILE_DISABLE=1,
runs eagerly, as before; one that fails to compile too, with a warning (once), its tensors restored first.
Random draws stay outside (`Choice.draw`, the seeded generator), so sampled tokens are the eager ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
import torch._inductor.config as inductor_config
from torch import Tensor

from seqlab.decode.compiled import warn_once
from seqlab.decode.replay import Replay, capturing, inductor_backend
from seqlab.decode.search import Choice

CHOICE_OPTIONS = {"cpp_wrapper": True}
MAX_GRAPHS = 64  # kinds of choice compiled per process; later kinds choose eagerly (a server's many settings)
_GRAPHS: dict[tuple, Replay | None] = {}  # kind of choice -> its replay (None: it could not be compiled)
_LOCK = threading.Lock()
# fullgraph: a graph break raises while tracing, before anything ran (the call mutates the decoding's tensors)
_compiled_call = torch.compile(Choice.__call__, dynamic=False, fullgraph=True, backend=inductor_backend)


def choice_key(choice: Choice, logits: Tensor, plan: Any) -> tuple | None:
    """What decides a choice's graph, or None when it is not compiled (a processor without `graph_key`)."""
    keys = []
    for processor in choice.processors:
        graph_key = getattr(processor, "graph_key", None)
        if graph_key is None or getattr(processor, "reads_ids", True):
            return None
        keys.append(graph_key())
    eos = None if choice.eos is None else choice.eos.numel()  # the ids and the fill are inputs, not constants
    return (tuple(keys), plan, choice.do_sample, choice.can_finish, eos, choice.fill is not None,
            tuple(logits.shape), logits.dtype, logits.device, choice.sequences.dtype, torch.is_grad_enabled())


class CompiledChoice:
    """A decoding's `Choice` through compiled graphs, one per plan; `choose(logits, plan)` = `choice(logits)`."""

    def __init__(self, choice: Choice):
        self.choice = choice
        self.calls: dict[Any, Callable[[Tensor], Tensor]] = {}  # plan -> the compiled call, or the eager choice

    def __call__(self, logits: Tensor, plan: Any) -> Tensor:
        call = self.calls.get(plan)
        if call is not None:
            return call(logits)
        tokens, self.calls[plan] = _first_call(self.choice, logits, plan)
        return tokens


def _first_call(choice: Choice, logits: Tensor, plan: Any) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """This step's tokens, and how the decoding's later steps at this plan choose theirs."""
    key = choice_key(choice, logits, plan)
    if key is None or choice.sequences.shape[1] < 2 or choice.logprobs.shape[1] < 2:
        return choice(logits), choice  # (a size of 0 or 1 cannot be a dynamic size)
    if torch._dynamo.config.disable:  # TORCH_COMPILE_DISABLE=1: torch.compile would only run it eagerly
        return choice(logits), choice
    tensors = choice.tensors()
    with _LOCK:
        if key in _GRAPHS:
            replay = _GRAPHS[key]
            tokens = choice(logits) if replay is None else replay(logits, *tensors)
        elif len(_GRAPHS) >= MAX_GRAPHS:
            replay, tokens = None, choice(logits)
        else:
            tokens, replay = _compile(choice, logits, tensors)
            _GRAPHS[key] = replay
    if replay is None:
        return tokens, choice
    return tokens, lambda logits: replay(logits, *tensors)


def _compile(choice: Choice, logits: Tensor, tensors: list[Tensor]) -> tuple[Tensor, Replay | None]:
    """Run `choice(logits)` through Dynamo and Inductor; its tokens and the replay of the graph (None: eager)."""
    # Dynamo compiles afresh (its cache entry of an earlier kind could match this one's guards: then nothing
    # would be captured); the earlier kinds' replays are Inductor's functions and do not need it
    torch._dynamo.reset_code(Choice.__call__.__code__)
    torch._dynamo.mark_dynamic(choice.sequences, 1)  # the prompt length and max_new_tokens are not constants
    torch._dynamo.mark_dynamic(choice.logprobs, 1)
    before = [t.clone() for t in tensors]  # a failure may come after the graph wrote its outputs: undo them
    try:
        with inductor_config.patch(CHOICE_OPTIONS), capturing() as graphs:
            tokens = _compiled_call(choice, logits)
    except Exception as e:  # noqa: BLE001 - any compiler failure: the state as it was, then choose eagerly
        for tensor, saved in zip(tensors, before, strict=True):
            tensor.copy_(saved)
        warn_once("choice", f"compiling the token choice failed, choosing eagerly: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}", stacklevel=4)
        return choice(logits), None
    return tokens, Replay.from_capture(graphs, [logits, *tensors], tokens)
