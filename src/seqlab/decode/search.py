"""Greedy search and multinomial sampling: one token per row per step, from processed scores.

    s_t   = processors(y_<t, logits_t)                    (float32; the prompt is part of y_<t)
    y_t   = argmax_v s_t[v]                                greedy
          ~ softmax(s_t)                                   sampling (seeded torch.Generator):
          = argmax_v softmax(s_t)[v] / E_v,  E_v ~ Exp(1)  the exponential race — one kernel, no host sync

A row finishes at EOS (or a stop string) and is then filled with `fill_id`. The host asks whether all
rows have finished only every `sync_every` steps — each ask waits for the device — so on a GPU the
loop may run a few steps past the end; those steps only write fill tokens, and the result is cut at
the longest row, exactly as if it had stopped in time.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import torch
from torch import Tensor

from seqlab.decode.processors import ProcessorList

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any]]


@torch.no_grad()
def sample_tokens(step: StepFn, prefix: Tensor, logits: Tensor, state: Any, *, max_new_tokens: int,
                  processors: ProcessorList, eos_ids: list[int], fill_id: int | None, do_sample: bool,
                  generator: torch.Generator | None = None, stop: Callable[[Tensor], Tensor] | None = None,
                  sync_every: int = 1) -> Generator[Tensor, None, Tensor]:
    """Yield each step's tokens (N,); return the sequences (N, P + generated), prompt (`prefix` (N, P)) first.

    `logits` (N, V) and `state` are what the model's prefill gave for the prefix; `step` is `model.step`
    (or its captured CUDA graph).
    """
    N, P = prefix.shape
    device = prefix.device
    sequences = prefix.new_full((N, P + max_new_tokens), 0 if fill_id is None else fill_id)
    sequences[:, :P] = prefix
    unfinished = torch.ones(N, dtype=torch.bool, device=device)
    generated = torch.zeros(N, dtype=torch.long, device=device)  # tokens each row made until it finished
    eos = torch.tensor(eos_ids, device=device) if eos_ids else None
    fill = None if fill_id is None else torch.tensor(fill_id, device=device)
    can_finish = eos is not None or stop is not None
    for t in range(max_new_tokens):
        scores = processors(sequences[:, :P + t], logits.float())  # (N, V)
        tokens = sample(scores, generator) if do_sample else scores.argmax(dim=-1)  # (N,)
        if can_finish:
            if fill is not None:
                tokens = torch.where(unfinished, tokens, fill)
            generated += unfinished
        sequences[:, P + t] = tokens
        if eos is not None:
            unfinished &= ~torch.isin(tokens, eos)
        if stop is not None:
            unfinished &= ~stop(sequences[:, :P + t + 1])
        yield tokens
        if t + 1 == max_new_tokens or (can_finish and (t + 1) % sync_every == 0 and not bool(unfinished.any())):
            break
        logits, state = step(tokens, state)
    return sequences[:, :P + int(generated.max())] if can_finish else sequences


def sample(scores: Tensor, generator: torch.Generator | None) -> Tensor:
    """One token per row from softmax(scores) (N, V) -> (N,), by the exponential race (see the module docstring)."""
    race = torch.empty_like(scores).exponential_(1.0, generator=generator).clamp_(min=torch.finfo(scores.dtype).tiny)
    return scores.softmax(dim=-1).div_(race).argmax(dim=-1)
