"""Greedy search and multinomial sampling: one token per row per step, from processed scores.

    s_t   = processors(y_<t, logits_t)                    (float32; the prompt is part of y_<t)
    y_t   = argmax_v s_t[v]                                greedy
          ~ softmax(s_t)                                   sampling (seeded torch.Generator):
          = argmax_v softmax(s_t)[v] / E_v,  E_v ~ Exp(1)  the exponential race — one kernel, no host sync

Each token's log-probability under the model's own distribution, log softmax(logits_t)[y_t] (the raw
logits, before the processors), is kept too: the reply's confidence is their mean (seqlab.decode.generate).

A row finishes at EOS (or a stop string) and is then filled with `fill_id` (log-probability 0). The host asks whether all
rows have finished only every `sync_every` steps — each ask waits for the device — so on a GPU the
loop may run a few steps past the end; those steps only write fill tokens, and the result is cut at
the longest row, exactly as if it had stopped in time.

`choose` is the rule itself, for rows that share their processors: the one implementation of a step's
log-probabilities, processors and choice. `Choice` is a step of `sample_tokens` (rows in lockstep: one
prompt length, one set of processors): `choose` and the bookkeeping, on tensors made once per decoding;
on a GPU it is recorded in the CUDA graph with the model's step (seqlab.decode.graphs), on a CPU compiled
by Inductor (seqlab.decode.compiled_choice), the E_v drawn just before. Continuous batching (seqlab.decode.batching) calls `choose` on groups of its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from seqlab.decode.processors import ProcessorList

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any]]


class Sampled(NamedTuple):
    sequences: Tensor  # (N, P + new): the prefix, then the generated tokens
    token_logprobs: Tensor  # (N, new) float32: log p_model of each generated token, 0.0 after the row finished
    lengths: Tensor  # (N,) tokens each row generated, EOS (or the token ending a stop string) included


class Choice:
    """One step's token choice and its bookkeeping, written in place into tensors made once per decoding.

    Nothing in a call waits for the device or allocates a tensor it keeps, so on a GPU a CUDA graph can
    record the choice together with the model's step (`CapturedStep.advance`) and replay both per token.
    The loop moves `length` (the host's count of tokens so far, prompt included); the processors see the
    sequences cut to it. Sampling's random draws are made outside, by `draw()`, before each choice.
    """

    def __init__(self, prefix: Tensor, max_new_tokens: int, processors: ProcessorList, eos_ids: list[int],
                 fill_id: int | None, do_sample: bool, generator: torch.Generator | None, can_finish: bool):
        N, P = prefix.shape
        device = prefix.device
        self.sequences = prefix.new_full((N, P + max_new_tokens), 0 if fill_id is None else fill_id)
        self.sequences[:, :P] = prefix
        self.length = P  # host: tokens per row so far, prompt included
        self.column = torch.tensor([P], device=device)  # device: the column the next token goes to
        self.new = torch.zeros(1, dtype=torch.long, device=device)  # device: tokens chosen so far (column - P)
        self.unfinished = torch.ones(N, dtype=torch.bool, device=device)
        self.generated = torch.zeros(N, dtype=torch.long, device=device)  # tokens each row made until it finished
        self.logprobs = torch.zeros(N, max_new_tokens, device=device)  # (N, new) log p_model(token), 0 once finished
        self.eos = torch.tensor(eos_ids, device=device) if eos_ids else None
        self.fill = None if fill_id is None else torch.tensor(fill_id, device=device)
        self.processors, self.do_sample, self.generator = processors, do_sample, generator
        self.can_finish = can_finish
        self.noise: Tensor | None = None  # (N, V) Exp(1) draws for the next choice

    def tensors(self) -> list[Tensor]:
        """Every tensor a call reads or writes but the logits, in an order fixed by the kind of choice."""
        optional = [self.noise if self.do_sample else None, self.eos, self.fill]
        return [self.sequences, self.column, self.new, self.unfinished, self.generated, self.logprobs,
                *(t for t in optional if t is not None)]

    def draw(self, logits: Tensor) -> None:
        """Sampling: the next choice's Exp(1) draws (N, V), from the decoding's generator (`exponential_`)."""
        if self.do_sample:
            if self.noise is None:
                self.noise = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
            exponential_(self.noise, self.generator)

    def __call__(self, logits: Tensor) -> Tensor:
        """logits (N, V) -> this step's tokens (N,), written at `column`, their log-probabilities at
        `column - P` of `logprobs`; rows that had finished get `fill` (log-probability 0)."""
        tokens, log_probs = choose(logits, self.processors, self.sequences[:, :self.length],
                                   self.noise if self.do_sample else None)
        if self.can_finish:
            if self.fill is not None:
                tokens = torch.where(self.unfinished, tokens, self.fill)
            self.generated.add_(self.unfinished)
        chosen = torch.where(self.unfinished[:, None], log_probs.gather(1, tokens[:, None]), 0.0)  # (N, 1)
        self.logprobs.index_copy_(1, self.new, chosen)
        self.sequences.index_copy_(1, self.column, tokens[:, None])
        self.column.add_(1)
        self.new.add_(1)
        if self.eos is not None:
            self.unfinished.bitwise_and_(~(tokens[:, None] == self.eos).any(dim=-1))
        return tokens


@torch.no_grad()
def sample_tokens(step: StepFn, prefix: Tensor, logits: Tensor, state: Any, *, max_new_tokens: int,
                  processors: ProcessorList, eos_ids: list[int], fill_id: int | None, do_sample: bool,
                  generator: torch.Generator | None = None, stop: Callable[[Tensor], Tensor] | None = None,
                  sync_every: int = 1) -> Generator[tuple[Tensor, Tensor], None, Sampled]:
    """Yield each step's tokens (N,) and their log-probabilities (N,); return the sequences (N, P + generated),
    prompt (`prefix` (N, P)) first, with every token's log-probability and each row's length (`Sampled`).

    `logits` (N, V) and `state` are what the model's prefill gave for the prefix; `step` is `model.step`
    (or its captured CUDA graph). A yielded tensor is valid until the next step (it may be reused).
    When `step` can fuse the choice with it (`advance`) and no processor reads the tokens so far, each
    later token is `step.advance`: on a GPU one replayed CUDA graph (the model's step, the processors, the
    choice), on a CPU two compiled calls (the step's, then the choice's: seqlab.decode.compiled_choice).
    """
    can_finish = bool(eos_ids) or stop is not None
    choice = Choice(prefix, max_new_tokens, processors, eos_ids, fill_id, do_sample, generator, can_finish)
    fused = getattr(step, "advance", None) if stop is None and not processors.reads_ids else None
    for t in range(max_new_tokens):
        choice.draw(logits)
        if t == 0 or fused is None:
            tokens = choice(logits)
        else:  # the model's step on the last tokens, then this choice: one graph per processor plan
            tokens = fused(choice, tokens, state, processors.plan(choice.length))
        choice.length += 1
        if stop is not None:
            choice.unfinished &= ~stop(choice.sequences[:, :choice.length])
        yield tokens, choice.logprobs[:, t]
        if t + 1 == max_new_tokens or (can_finish and (t + 1) % sync_every == 0 and not bool(choice.unfinished.any())):
            break
        if fused is None:
            logits, state = step(tokens, state)
    new = int(choice.generated.max()) if can_finish else max_new_tokens
    lengths = choice.generated if can_finish else torch.full_like(choice.generated, max_new_tokens)
    return Sampled(choice.sequences[:, :prefix.shape[1] + new], choice.logprobs[:, :new], lengths)


def choose(logits: Tensor, processors: ProcessorList, ids: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
    """The next tokens (N,) of rows that share `processors`, and the model's log-probabilities (N, V).

    logits (N, V) are the model's; `ids` (N, L) the tokens so far, prompt included (processors that read
    neither the tokens nor their number accept any `ids`); `noise` (N, V) sampling's Exp(1) draws, or None
    for greedy search. The log-probabilities are log softmax of the raw logits, before the processors.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, V) the model's own, before the processors
    scores = processors(ids, logits.float())  # (N, V)
    tokens = race(scores, noise) if noise is not None else scores.argmax(dim=-1)  # (N,)
    return tokens, log_probs


def exponential_(noise: Tensor, generator: torch.Generator | None) -> Tensor:
    """Fill `noise` with Exp(1) draws, in place, by inversion: E = -log(1 - U), U ~ Uniform[0, 1).

    The distribution `noise.exponential_(1.0, generator=g)` draws from, at a quarter of its CPU cost: torch's
    CPU exponential_ evaluates one scalar log per value (~20 ns), uniform_ and the vectorized log1p ~5 ns
    together (a vocabulary of 2,000: 11 instead of 40 us per row and step; a served batch of 16 rows draws
    16 times a step). 1 - U lies in (0, 1], so every E is finite and >= 0 (`race` clamps E = 0).
    """
    return noise.uniform_(generator=generator).neg_().log1p_().neg_()


def race(scores: Tensor, noise: Tensor) -> Tensor:
    """One token per row from softmax(scores) (N, V) -> (N,), given Exp(1) draws `noise` (N, V): the
    exponential race of the module docstring."""
    return scores.softmax(dim=-1).div_(noise.clamp(min=torch.finfo(scores.dtype).tiny)).argmax(dim=-1)
