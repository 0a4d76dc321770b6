"""Logits processors: small, composable rewrites of next-token scores, one per decoding knob.

Each is a callable `(input_ids, scores) -> scores`: `input_ids` (N, L) are the tokens so far (prompt
included, left padding included), `scores` (N, V) the next-token scores — logits for greedy and
sampling, log-probabilities in beam search. A processor never modifies its input; it returns a new
tensor. `reads_ids` says whether it looks at the tokens themselves; one that looks only at their
number L says when it acts with `active(L)`. The GPU fast path records the choice of a token in a
CUDA graph only when no processor reads the tokens, one graph per plan (`ProcessorList.plan`). The
CPU fast path compiles the choice (seqlab.decode.compiled_choice), one graph per plan and per
`graph_key()` of each processor: what decides the kernels it runs (its settings, not the prompt
length that only decides when it acts); a processor without one keeps the choice eager.
The definitions follow Hugging Face transformers 5.24.0 (`generation/logits_process.py`):

    temperature          s / T
    top-k                s_i -> -inf unless s_i >= the k-th largest score
    top-p (nucleus)      sort ascending; drop tokens whose cumulative probability is <= 1 - p
                         (so the kept set is the smallest whose mass exceeds p), keep >= min_keep
    min-p                drop tokens with p_i < min_p * max_j p_j, keep >= min_keep
    repetition penalty   for every token already in the sequence: s < 0 ? s * r : s / r   (CTRL)
    no-repeat n-gram     ban tokens that would complete an n-gram already in the sequence
    min new tokens       EOS -> -inf while fewer than `min_new_tokens` tokens were generated
    bad words            ban the last token of each banned sequence whose prefix ends the sequence
    forced EOS           everything but EOS -> -inf at the last position before `max_length`
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

NEG_INF = -math.inf


class LogitsProcessor(Protocol):
    reads_ids: bool  # whether the result depends on the tokens so far (not only on their number)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        ...


class TokenIds:
    """Token ids as an index tensor on each device they are used on, made at the first use there (eager:
    a CUDA graph records a step only after it ran once) — never copied from the host inside a graph."""

    def __init__(self, ids: Sequence[int]):
        self.ids = [int(t) for t in ids]
        self._on: dict[torch.device, Tensor] = {}

    def on(self, device: torch.device) -> Tensor:
        if device not in self._on:
            self._on[device] = torch.tensor(self.ids, dtype=torch.long, device=device)
        return self._on[device]


class Temperature:
    """s / T; T < 1 sharpens the distribution, T > 1 flattens it."""

    reads_ids = False

    def __init__(self, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def graph_key(self) -> tuple:
        return ("temperature", self.temperature)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        return scores / self.temperature


class TopK:
    """Keep the k highest scores (ties with the k-th included), -inf elsewhere."""

    reads_ids = False

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def graph_key(self) -> tuple:
        return ("top_k", self.top_k)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        k = min(self.top_k, scores.shape[-1])
        kth = torch.topk(scores, k).values[..., -1:]  # (N, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP:
    """Nucleus filtering: keep the smallest set of most likely tokens with probability mass > p."""

    reads_ids = False

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p = top_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def graph_key(self) -> tuple:
        return ("top_p", self.top_p, self.min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        sorted_scores, order = torch.sort(scores, descending=False)  # (N, V) ascending
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= (1 - self.top_p)
        drop_sorted[..., -self.min_tokens_to_keep:] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return scores.masked_fill(drop, NEG_INF)


class MinP:
    """Drop tokens less likely than `min_p` times the most likely one (Nguyen et al. 2024)."""

    reads_ids = False

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p = min_p
        self.min_tokens_to_keep = min_tokens_to_keep

    def graph_key(self) -> tuple:
        return ("min_p", self.min_p, self.min_tokens_to_keep)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        probs = scores.softmax(dim=-1)
        drop = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        keep = torch.topk(probs, min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        drop = drop.scatter(-1, keep, False)
        return scores.masked_fill(drop, NEG_INF)


class RepetitionPenalty:
    """CTRL's penalty (Keskar et al. 2019) on every token present in `input_ids`.

    `ignore_prefix` (N,) skips the first positions of each row — the left padding, as HF does with
    the attention mask — so pad tokens are not penalised.
    """

    reads_ids = True

    def __init__(self, penalty: float, ignore_prefix: Tensor | None = None):
        if not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
        self.penalty = penalty
        self.ignore_prefix = ignore_prefix

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        V = scores.shape[-1]
        ids = input_ids.clamp(max=V)
        if self.ignore_prefix is not None:
            positions = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(positions[None, :] < self.ignore_prefix[:, None], V)
        padded = torch.nn.functional.pad(scores, (0, 1))  # (N, V+1): column V absorbs ignored ids
        seen = padded.gather(1, ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, ids, seen)[:, :V]


class NoRepeatNGram:
    """Ban every token that would repeat an n-gram already in the sequence (Paulus et al. 2017).

    The last n-1 tokens form the prefix; every earlier window whose first n-1 tokens equal it bans
    its own last token.
    """

    reads_ids = True

    def __init__(self, ngram_size: int):
        if ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {ngram_size}")
        self.n = ngram_size

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        N, L = input_ids.shape
        if L < self.n:
            return scores
        V = scores.shape[-1]
        prefix = input_ids[:, L + 1 - self.n:]  # (N, n-1)
        windows = input_ids.unfold(1, self.n, 1)  # (N, L-n+1, n)
        matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)  # (N, L-n+1)
        banned = scores.new_zeros((N, V + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=V), V), True)
        return scores.masked_fill(banned[:, :V], NEG_INF)


class MinNewTokens:
    """EOS -> -inf until `min_new_tokens` tokens follow the prompt of length `prompt_length`."""

    reads_ids = False

    def __init__(self, prompt_length: int, min_new_tokens: int, eos_token_ids: Sequence[int]):
        self.prompt_length = prompt_length
        self.min_new_tokens = min_new_tokens
        self.eos = TokenIds(eos_token_ids)

    def active(self, length: int) -> bool:
        return length - self.prompt_length < self.min_new_tokens

    def graph_key(self) -> tuple:
        return ("min_new_tokens", tuple(self.eos.ids))

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if not self.active(input_ids.shape[-1]):
            return scores
        return scores.index_fill(-1, self.eos.on(scores.device), NEG_INF)


class SuppressTokens:
    """Never generate these tokens: their scores become -inf (HF's SuppressTokensLogitsProcessor)."""

    reads_ids = False

    def __init__(self, token_ids: Sequence[int]):
        self.ids = TokenIds(sorted({int(t) for t in token_ids}))

    def graph_key(self) -> tuple:
        return ("suppress_tokens", tuple(self.ids.ids))

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.ids.ids and self.ids.ids[-1] >= scores.shape[-1]:
            raise ValueError(f"suppress_tokens hold a token id outside the vocabulary (size {scores.shape[-1]})")
        return scores.index_fill(-1, self.ids.on(scores.device), NEG_INF)


class BadWords:
    """Never complete a banned token sequence: a single-token ban is always on; a longer one bans its
    last token when the sequence ends with the rest. Bans equal to a lone EOS are ignored (as in HF).
    """

    def __init__(self, bad_words_ids: Sequence[Sequence[int]], eos_token_ids: Sequence[int] = ()):
        if not bad_words_ids or any(not seq or min(seq) < 0 for seq in bad_words_ids):
            raise ValueError(f"bad_words_ids must be non-empty lists of token ids >= 0, got {bad_words_ids}")
        eos = [[e] for e in eos_token_ids]
        unique = list(dict.fromkeys(tuple(int(t) for t in seq) for seq in bad_words_ids if list(seq) not in eos))
        self.single = TokenIds(seq[0] for seq in unique if len(seq) == 1)
        self.by_prefix_length: dict[int, list[tuple[int, ...]]] = {}
        for seq in unique:
            if len(seq) > 1:
                self.by_prefix_length.setdefault(len(seq) - 1, []).append(seq)
        self.max_id = max(t for seq in unique for t in seq) if unique else -1
        self.reads_ids = bool(self.by_prefix_length)  # single-token bans alone do not look at the tokens
        self._tensors: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}

    def _group(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (n, device)
        if key not in self._tensors:
            seqs = self.by_prefix_length[n]
            self._tensors[key] = (torch.tensor([s[:-1] for s in seqs], device=device),  # (S, n)
                                  torch.tensor([s[-1] for s in seqs], device=device))  # (S,)
        return self._tensors[key]

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        V = scores.shape[-1]
        if self.max_id >= V:
            raise ValueError(f"bad_words_ids hold a token id outside the vocabulary (size {V})")
        hits = scores.new_zeros(scores.shape)  # (N, V): how many bans hit each token
        hits.index_fill_(1, self.single.on(scores.device), 1.0)
        for n in self.by_prefix_length:
            if n > input_ids.shape[1]:
                continue
            prefixes, last = self._group(n, scores.device)
            hit = (input_ids[:, None, -n:] == prefixes[None]).all(dim=-1)  # (N, S)
            hits.index_add_(1, last, hit.to(hits.dtype))  # no host sync: stays capturable on GPU
        return scores.masked_fill(hits > 0, NEG_INF)


class ForcedEOS:
    """At the last position before `max_length` (prompt included), force an EOS: 0 on EOS, -inf elsewhere."""

    reads_ids = False

    def __init__(self, max_length: int, eos_token_ids: Sequence[int]):
        self.max_length = max_length
        self.eos = TokenIds(eos_token_ids)

    def active(self, length: int) -> bool:
        return length == self.max_length - 1

    def graph_key(self) -> tuple:
        return ("forced_eos", tuple(self.eos.ids))

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if not self.active(input_ids.shape[-1]):
            return scores
        return torch.full_like(scores, NEG_INF).index_fill_(-1, self.eos.on(scores.device), 0.0)


class ProcessorList(list):
    """Processors applied in order; empty means the scores pass through untouched."""

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores

    @property
    def reads_ids(self) -> bool:
        """Whether any processor looks at the tokens so far (a processor without the flag is assumed to)."""
        return any(getattr(p, "reads_ids", True) for p in self)

    def plan(self, length: int) -> tuple[bool, ...]:
        """Which length-dependent processors act after `length` tokens: steps with equal plans (and no
        processor reading the tokens) run the same kernels on the same tensors."""
        return tuple(p.active(length) for p in self if hasattr(p, "active"))
