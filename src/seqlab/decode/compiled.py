"""The CPU fast path: the decode step compiled by Inductor, weights frozen and prepacked.

On a CPU a small Transformer's decode step is 24 matrix-vector products plus ~130 small ops, each
dispatched from Python. `torch.compile` with Inductor's *freezing* turns the step into one C++
function: the weights become constants (each Linear's oneDNN-blocked copy is folded in at compile
time, see `seqlab.modules.linear`), elementwise ops are fused into loops, and `cpp_wrapper` calls the
kernels without Python in between. Products of a few rows and the step's attention are written as
reductions Inductor fuses into its loops (`seqlab.modules.linear`, `seqlab.decode.step_attention`,
which the step passes to `TransformerLM.step`). `bench/decode.py --compile` measures what it gains
(docs/benchmarks.md).

    step = CompiledStep(model)          # compiles on the first call (slow: tens of seconds), then reuses it
    logits, state = step(tokens, state) # the same contract as model.step

On a CUDA GPU the same compiled graph (`compiled_step_for`, with `CUDA_INDUCTOR_OPTIONS`: Triton
kernels, no C++ wrapper) is what `seqlab.decode.graphs.CapturedStep(model, compiled=True)` records.

What it costs and assumes:
- compiling takes tens of seconds per model and batch size (rows); the cache is sized to the model's whole
  context (`cache_length`), so prompt lengths and `max_new_tokens` never trigger a recompile. It pays
  off for long or repeated decoding (a chat session, batched prompts, a benchmark), not one short reply.
- the step is passed the cache cut to its filled slots (`_window`), a size the graph takes as dynamic:
  attention reads only what was written, not the whole context.
- frozen weights are constants: the compiled step is kept on the model and rebuilt when any
  parameter changes (its storage or autograd version counter, like the packed Linear's cache), after
  dropping Dynamo's cached code for the step, whose guards do not look at weight values.
- the step reads the state as explicit tensors (tokens, key_valid, slot, position, the KV buffers),
  the form Inductor freezes; the state is updated in place exactly as the eager step does. The result
  differs from eager decoding by float rounding only (~1e-6 on the logits; the tests check tokens).
- Dynamo runs only the first time a model steps at a batch size: that call compiles the graph and keeps
  Inductor's function (`seqlab.decode.replay`); every later step — of this decoding and of later ones
  with the same batch size — calls it directly, without Dynamo's per-call work (its cache lookup and
  the bytecode that gathers the graph's arguments: 0.4–0.6 ms of a ~3 ms step here). The replays are
  kept on the model, keyed by what Dynamo would guard on that can change (rows, the cache's shape,
  dtypes and strides, beam search or not, grad mode). When a call cannot be replayed (a graph
  break) the step calls through Dynamo, checking guards on the first call of a decoding only
  (`skip_guard_eval_unsafe` later: within one decoding every call passes the same model and tensors
  of the same shapes, dtypes and strides). The first call either compiles this model's graph or fails
  (past Dynamo's recompile limit, `RECOMPILE_LIMIT`), never runs without one.
- it needs a C++ compiler (Inductor's CPU backend); without one, or on any compile error, it warns
  once and decodes eagerly, which changes nothing but the speed.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from typing import Any

import torch
import torch._inductor.config as inductor_config
from torch import Tensor, nn

from seqlab.decode.replay import Replay, capturing, inductor_backend
from seqlab.decode.step_attention import step_attention
from seqlab.modules import cpu_kernels

INDUCTOR_OPTIONS = {"freezing": True, "cpp_wrapper": True}
CUDA_INDUCTOR_OPTIONS = {"freezing": True}  # a CUDA graph records the step: no C++ wrapper needed


def can_compile(model: Any) -> bool:
    """seqlab's TransformerLM with fp32 weights on the CPU or a CUDA GPU: the model whose step this path
    hands to Inductor (on a GPU, `seqlab.decode.graphs.CapturedStep` then records the compiled step)."""
    from seqlab.models.transformer_lm import TransformerLM

    return (isinstance(model, TransformerLM)
            and all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in model.parameters()))


def cache_length(model: Any) -> int:
    """KV-cache slots for a compiled decoding: the whole context, so one compiled graph serves every prompt."""
    return int(model.max_length)


class _StepGraph(nn.Module):
    """`model.step` over explicit state tensors; Inductor freezes the module's weights, not its inputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, key_valid: Tensor, slot: Tensor, position: Tensor,
                keys: list[Tensor], values: list[Tensor]) -> Tensor:
        from seqlab.models.transformer_lm import TransformerState
        from seqlab.modules.kv_cache import StaticKVCache

        state = TransformerState(StaticKVCache.from_buffers(keys, values), key_valid, slot, position)
        logits, _ = self.model.step(tokens, state, attention=step_attention)
        return logits  # (N, V)


class _BeamStepGraph(_StepGraph):
    """The step of a beam search whose cache rows are never moved: beam b's slot s is in row rows[b, s]."""

    def forward(self, tokens: Tensor, key_valid: Tensor, slot: Tensor, position: Tensor,
                keys: list[Tensor], values: list[Tensor], rows: Tensor) -> Tensor:
        from seqlab.models.transformer_lm import TransformerState
        from seqlab.modules.kv_cache import StaticKVCache

        state = TransformerState(StaticKVCache.from_buffers(keys, values), key_valid, slot, position)
        logits, _ = self.model.step(tokens, state, attention=partial(rows_attention, rows))
        return logits  # (N, V)


def gather_rows(buffer: Tensor, rows: Tensor) -> Tensor:
    """buffer (N, nh, W, hs), rows (N, W) -> out[b, :, s] = buffer[rows[b, s], :, s]: (N, nh, W, hs)."""
    return buffer[rows, :, torch.arange(rows.shape[1], device=rows.device)].permute(0, 2, 1, 3)


def rows_attention(rows: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """step_attention over the beams' own slots: Inductor folds the gather into the attention's loops."""
    return step_attention(q, gather_rows(k, rows), gather_rows(v, rows), mask)


_WARNED: set[str] = set()  # the kinds of failure warned about in this process (`warn_once`)


class _Entry:
    """A model's compiled step, kept on the model (`model._compiled_step`) with the parameter key it froze.

    A copy of the model (deepcopy, pickle) gets None: the copy's weights are other tensors.
    """

    def __init__(self, key: tuple, graph: Any):
        self.key, self.graph = key, graph
        self.beam_graph: Any = None  # the beam-search step (_BeamStepGraph), made at its first use
        self.replays: dict[tuple, Replay] = {}  # CompiledStep's direct calls, by `_signature`

    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __reduce__(self) -> tuple:
        return (type(None), ())


def _parameter_key(model: nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


# Dynamo keeps one cache entry per model and batch size for the one `_StepGraph.forward` (8 by default); a
# process that decodes several models (a server, a notebook, the test suite) needs more. Past the limit the
# first call of a decoding fails and `CompiledStep` decodes eagerly.
RECOMPILE_LIMIT = 1024


def _room_for_graphs() -> None:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)


def compiled_step_for(model: nn.Module) -> Any:
    """The model's compiled step graph, built (lazily: compiling happens at its first call) when missing or stale."""
    key = _parameter_key(model)
    entry = model.__dict__.get("_compiled_step")
    if entry is None or entry.key != key:
        if entry is not None:  # new weights, same tensors: Dynamo's guards would reuse the graph with the old constants
            torch._dynamo.reset_code(_StepGraph.forward.__code__)
            torch._dynamo.reset_code(_BeamStepGraph.forward.__code__)
        _room_for_graphs()
        entry = _Entry(key, torch.compile(_StepGraph(model), dynamic=False, backend=inductor_backend))
        model.__dict__["_compiled_step"] = entry
    return entry.graph


def compiled_beam_step_for(model: nn.Module) -> Any:
    """The model's compiled beam-search step (`_BeamStepGraph`), kept and rebuilt like `compiled_step_for`'s."""
    compiled_step_for(model)
    entry = model.__dict__["_compiled_step"]
    if entry.beam_graph is None:
        entry.beam_graph = torch.compile(_BeamStepGraph(model), dynamic=False, backend=inductor_backend)
    return entry.beam_graph


class CompiledStep:
    """`model.step` through the model's compiled step graph; falls back to eager if compiling fails.

    With `beams=True` (beam search) the step's `reorder` replaces `model.reorder_state`: instead of
    copying every layer's filled cache slots into the new beams' rows (a pass over the whole cache per
    token), it reorders a table `rows` (N, S): beam b's slot s is in cache row rows[b, s]. Every row writes
    each slot once, at that step (rows[b, t] = b for the slot t being written), so no row is ever
    overwritten while another beam reads it; the step's attention reads the keys and values through the
    table (`rows_attention`). On an eager fallback the cache is put in order first (`_materialize`).
    """

    def __init__(self, model: nn.Module, beams: bool = False):
        self.model = model
        self.beams = beams
        self.graph = compiled_beam_step_for(model) if beams else compiled_step_for(model)
        self._replays = model.__dict__["_compiled_step"].replays
        self.replay: Replay | None = None  # Inductor's function, called without Dynamo (seqlab.decode.replay)
        self.choice: Any = None  # `advance`: the decoding's compiled token choice
        self.eager = False
        self.calls = 0
        # the first step, compiling included, plus each first choice at a new plan (`advance`: it may compile)
        self.first_step_seconds: float | None = None
        self.rows: Tensor | None = None  # beams: (N, S) the cache row of each beam's slot

    def __call__(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        self.calls += 1
        if self.eager:
            return self.model.step(tokens, state)
        rows = self._rows(state) if self.beams else None
        if self.replay is not None:
            return self.replay(*_window(tokens, state, mark=False, rows=rows)), state
        if self.calls > 1:  # no replay: the first call's guards chose the graph, later calls only run it
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                return self.graph(*_window(tokens, state, mark=False, rows=rows)), state
        started = time.perf_counter()
        signature = _signature(tokens, state, self.beams)
        self.replay = self._replays.get(signature)
        if self.replay is not None:  # this model stepped at this size before: no Dynamo at all
            logits = self.replay(*_window(tokens, state, mark=False, rows=rows))
        else:
            logits, state = self._compile(tokens, state, signature)
        self.first_step_seconds = time.perf_counter() - started
        return logits, state

    def _compile(self, tokens: Tensor, state: Any, signature: tuple) -> tuple[Tensor, Any]:
        """The first call: through Dynamo, which compiles the graph (or finds it in its cache); keeps the replay."""
        inputs = _window(tokens, state, mark=True, rows=self._rows(state) if self.beams else None)
        if tokens.device.type == "cpu":  # build seqlab's CPU kernels before tracing: the graph calls them
            cpu_kernels.available()
        try:
            # compile(options=...) does not reach freezing. Past Dynamo's recompile limit the call must fail, not
            # run eagerly: later calls skip the guards and would replay another model's graph (wrong tokens)
            with inductor_config.patch(INDUCTOR_OPTIONS), torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), \
                    capturing() as graphs:
                logits = self.graph(*inputs)
        except Exception as e:  # noqa: BLE001 - any compiler failure: compiling runs nothing, the state is intact
            warn_once("step", f"compiling the decode step failed, decoding without it: {str(e).splitlines()[0]}")
            self.eager = True
            self._materialize(state)
            return self.model.step(tokens, state)
        self.replay = Replay.from_capture(graphs, inputs, logits)
        if self.replay is not None:
            self._replays[signature] = self.replay
        return logits, state

    def advance(self, choice: Any, tokens: Tensor, state: Any, plan: Any) -> Tensor:
        """The next tokens: the step on `tokens`, then `choice(logits)` — greedy search's or sampling's `Choice`
        compiled too (seqlab.decode.compiled_choice, one graph per `plan`), anything else (beam search's
        `Beams.choose`) eagerly."""
        from seqlab.decode.search import Choice

        logits, _ = self(tokens, state)
        if self.eager or not isinstance(choice, Choice):
            return choice(logits)
        if self.choice is None or self.choice.choice is not choice:
            from seqlab.decode.compiled_choice import CompiledChoice

            self.choice = CompiledChoice(choice)
        if plan in self.choice.calls:
            return self.choice(logits, plan)
        started = time.perf_counter()  # a new plan may compile a choice: counted with the first step's compiling
        tokens = self.choice(logits, plan)
        self.first_step_seconds = (self.first_step_seconds or 0.0) + time.perf_counter() - started
        return tokens

    def reorder(self, state: Any, index: Tensor) -> Any:
        """Beam search's reorder: the new beams (N,) `index` into the old ones, as `model.reorder_state`."""
        if not self.beams or self.eager or index.numel() != state.key_valid.shape[0]:
            return self.model.reorder_state(state, index)
        rows, filled = self._rows(state), int(state.slot)
        rows[:, :filled] = rows[:, :filled].index_select(0, index)  # slots not yet written stay the row's own
        state.key_valid.copy_(state.key_valid.index_select(0, index))
        state.position.copy_(state.position.index_select(0, index))
        return state

    def _rows(self, state: Any) -> Tensor:
        if self.rows is None:
            N, S = state.key_valid.shape
            self.rows = torch.arange(N, device=state.key_valid.device)[:, None].expand(N, S).contiguous()
        return self.rows

    def _materialize(self, state: Any) -> None:
        """Put each beam's slots into its own cache row (for the eager step, which reads rows as they are)."""
        if self.rows is None:
            return
        filled = int(state.slot)
        for buffer in state.cache.keys + state.cache.values:
            buffer[:, :, :filled] = gather_rows(buffer[:, :, :filled], self.rows[:, :filled])
        self.rows = None


def _signature(tokens: Tensor, state: Any, beams: bool) -> tuple:
    """What tells one graph of a model's step from another: what Dynamo guards on that can change between
    decodings (a replay is only ever used for a call with the same signature)."""
    tensors = [tokens, state.key_valid, state.slot, state.position, *state.cache.keys, *state.cache.values]
    return (beams, torch.is_grad_enabled(), *((t.shape, t.stride(), t.dtype, t.device) for t in tensors))


def _window(tokens: Tensor, state: Any, mark: bool, rows: Tensor | None = None) -> tuple:
    """The step's inputs, the cache cut to its filled slots: views (N, nh, W, hs) of the buffers, W = slot + 1
    (and beam search's `rows` (N, W)).

    W is a dynamic size of the one graph (`mark`: tell Dynamo on the first call), so attention reads only
    the slots written so far, not the whole context: at large batches attention is memory-bound.
    """
    W = int(state.slot) + 1  # the slot this step writes, and every one before it
    keys = [k[:, :, :W] for k in state.cache.keys]
    values = [v[:, :, :W] for v in state.cache.values]
    key_valid = state.key_valid[:, :W]
    if mark:
        S = state.key_valid.shape[1]
        for t in keys + values:
            torch._dynamo.mark_dynamic(t, 2, min=2, max=S)
        torch._dynamo.mark_dynamic(key_valid, 1, min=2, max=S)
    if rows is None:
        return tokens, key_valid, state.slot, state.position, keys, values
    rows = rows[:, :W]
    if mark:
        torch._dynamo.mark_dynamic(rows, 1, min=2, max=state.key_valid.shape[1])
    return tokens, key_valid, state.slot, state.position, keys, values, rows


def cuda_step(model: nn.Module) -> Any:
    """`step(tokens, state)` through the model's compiled step graph on a GPU (what `CapturedStep` records),
    always called under the options it was compiled with, since Dynamo guards on them: with freezing the
    weights are constants and the step's attention is `seqlab.decode.step_attention`'s fused reductions."""
    graph = compiled_step_for(model)

    def step(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        with inductor_config.patch(CUDA_INDUCTOR_OPTIONS):
            logits = graph(tokens, state.key_valid, state.slot, state.position, state.cache.keys, state.cache.values)
        return logits, state

    return step


def warn_once(kind: str, message: str, stacklevel: int = 3) -> None:
    """Warn with `message` the first time a failure of this `kind` happens in the process."""
    if kind not in _WARNED:
        _WARNED.add(kind)
        warnings.warn(message, stacklevel=stacklevel)
