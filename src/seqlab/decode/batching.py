"""Continuous batching: one running batch of rows that requests join and leave between decode steps.

    batch = ContinuousBatch(model, tokenizer, max_batch=16)
    batch.add("a", prompt_ids, GenerationOptions(max_new_tokens=64, do_sample=True, seed=1))
    while batch:
        for event in batch.step():        # one model step over every row: a token (and text) per row
            send(event.request_id, event.text, event.finish_reason)
        batch.remove("b")                  # its client went away: the row leaves before the next step

A request joins in two moves: `add` checks it and makes its row; the next `step` prefills the prompts
of every request added since the last step together (one left-padded batch through the model's
`prefill`: a burst of requests costs one prefill, not one each), chooses their first tokens from those
logits and merges their state into the running batch (the model's `merge_states`, seqlab.decode.state).
Each step feeds every running row its last token through one `model.step`, so the batch holds exactly
the live rows: no compute on empty ones.
A row that ends (EOS, a stop string, max_new_tokens or the context) or is removed leaves before the next
step (`reorder_state` on the rows that stay; the last rows move into the holes).

A request's tokens do not depend on the rest of the batch. Each row has its own options: processors
built by `build_processors` from them, its own torch.Generator seeded with its seed and its own Exp(1)
draws, its own stop strings, all as `generate` makes them for the request alone; the choice is
`seqlab.decode.search.choose`, the one `generate` makes. Rows whose processors do not read the tokens,
with equal settings (e.g. every request with the run's default sampling options) and the same
length-dependent processors acting at this step (min_new_tokens still blocking EOS, or not), share one
`choose` call: its operations are row by row, so each row gets the numbers it gets alone.
What rows do share is the model's prefill and step: a row's logits in a batch equal its logits alone
up to float rounding (matrix kernels of another batch size, attention over a longer, masked cache;
~1e-6), which can change a token only where two are that close.

The text of each row comes from a `seqlab.decode.stream.TextPieces`, as `stream` makes it: pieces that
never split a character, cut right after a stop string. Beam search is not batched: it runs on
`generate` (the server sends num_beams > 1 there). A batch is not thread-safe: one thread owns it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from seqlab.decode.bucketed import BucketedStep
from seqlab.decode.generate import _check_inputs, _fit_context, _model_device, build_processors
from seqlab.decode.options import GenerationOptions
from seqlab.decode.prompts import build_prompt_ids, left_pad
from seqlab.decode.search import choose, exponential_
from seqlab.decode.stopping import StopStrings
from seqlab.decode.stream import TextPieces, detokenizer_context
from seqlab.errors import SeqlabError

# options that never change processors which read neither the tokens nor their number (rows may differ in them)
PER_ROW_OPTIONS = ("max_new_tokens", "seed", "stop_strings")


class BatchFull(RuntimeError):
    """`add` on a batch that already has `max_batch` rows."""


class Usage(NamedTuple):
    prompt_tokens: int  # the prompt's tokens (the source, for an encoder-decoder), label token included
    completion_tokens: int  # tokens generated, EOS included


@dataclasses.dataclass
class BatchEvent:
    """One row's step: its new token and the text it completes; at the row's last step, how it ended."""

    request_id: Hashable
    token_id: int
    logprob: float  # log p_model(token): log softmax of the raw logits, before the processors
    text: str  # the new text ("" while a character or a stop string's end is incomplete); may be several tokens'
    finish_reason: str | None = None  # at the end: "stop" (EOS or a stop string) or "length"
    usage: Usage | None = None  # at the end
    confidence: float | None = None  # at the end: the mean token log-prob, as GenerateOutput.confidence
    top_logprobs: list[tuple[int, float]] | None = None  # add(top_logprobs=k): the k likeliest (id, log p_model)

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


class Row:
    """One request's decoding in the batch: its options, processors, random stream, tokens and text."""

    def __init__(self, request_id: Hashable, options: GenerationOptions, prompt_ids: list[int], prefix: Tensor,
                 max_new_tokens: int, model: Any, tokenizer: Any):
        P = prefix.shape[1]
        self.request_id, self.options, self.max_new_tokens = request_id, options, max_new_tokens
        self.prompt_ids = prompt_ids
        self.processors = build_processors(options, P, max_new_tokens, None, tokenizer)
        self.generator = None if options.seed is None else \
            torch.Generator(device=prefix.device).manual_seed(options.seed)
        self.noise: Tensor | None = None  # (1, V) sampling's Exp(1) draws for the next choice
        self.stop = StopStrings(options.stop_list, tokenizer, P) if options.stop_strings is not None else None
        self.text = TextPieces(tokenizer, detokenizer_context(model, prompt_ids), options.stop_list)
        self.eos = set(options.eos_ids)
        # rows with equal settings share one `choose`; others (their processors read the tokens) choose alone
        self.settings: Hashable | None = None if self.processors.reads_ids else _frozen(options)
        counts = any(hasattr(p, "active") for p in self.processors)  # a processor acts by the tokens' number
        self.ids: Tensor | None = None  # (1, P + max_new_tokens) the tokens so far, when something reads them
        if self.settings is None or counts or self.stop is not None:
            self.ids = prefix.new_zeros(1, P + max_new_tokens)
            self.ids[:, :P] = prefix
        self.length = P  # tokens so far, prompt (or decoder start token) included
        self.token_logprobs: list[float] = []
        self.last_token: int | None = None
        self.finish_reason: str | None = None
        self.removed = False
        self.top_logprobs = 0  # alternatives its events carry (add's top_logprobs)

    @property
    def generated(self) -> int:
        return len(self.token_logprobs)

    @property
    def group(self) -> Hashable:
        """Rows with equal groups share this step's `choose`: equal settings, and the same processors acting
        after their numbers of tokens (e.g. min_new_tokens); a row whose processors read the tokens is alone."""
        if self.settings is None:
            return self
        return self.settings, self.processors.plan(self.length)

    def draw(self, logits: Tensor) -> Tensor | None:
        """Sampling: this choice's Exp(1) draws (1, V) from the row's own generator (None for greedy)."""
        if not self.options.do_sample:
            return None
        if self.noise is None:
            self.noise = torch.empty((1, logits.shape[-1]), dtype=torch.float32, device=logits.device)
        return exponential_(self.noise, self.generator)

    def advance(self, token: int, logprob: float) -> BatchEvent:
        """Take this step's token: its text, and whether the row ends, as `stream` decides it."""
        self.token_logprobs.append(logprob)
        self.last_token = token
        if self.ids is not None:
            self.ids[0, self.length] = token
        self.length += 1
        text = self.text.push([token])
        if self.text.stopped or token in self.eos or (self.stop is not None
                                                       and bool(self.stop(self.ids[:, :self.length]))):
            self.finish_reason = "stop"
        elif self.generated == self.max_new_tokens:
            self.finish_reason = "length"
        if self.finish_reason is None:
            return BatchEvent(self.request_id, token, logprob, text)
        if not self.text.stopped:
            text += self.text.finish()
        return BatchEvent(self.request_id, token, logprob, text, self.finish_reason,
                          Usage(len(self.prompt_ids), self.generated), sum(self.token_logprobs) / self.generated)


class ContinuousBatch:
    """The running batch of one model; see the module docstring.

    `model` implements seqlab.decode.state.DecoderModel with `merge_states` (and `make_room` where its rows
    share a cache slot); `tokenizer` decodes the text (and compiles stop strings and banned words).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int, compile: bool = False):
        if not hasattr(model, "merge_states"):
            raise SeqlabError(f"{type(model).__name__} cannot decode in a continuous batch: it has no merge_states")
        if max_batch < 1:
            raise SeqlabError(f"max_batch must be >= 1, got {max_batch}")
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        # compile: the step through Inductor-compiled graphs of 1, 2, 4, ... rows (seqlab.decode.bucketed)
        self.step_fn = BucketedStep(model, max_batch) if compile else model.step
        self.device = _model_device(model)
        self.rows: list[Row] = []  # the running rows, in the order of the state's batch
        self.state: Any = None
        self.joining: list[Row] = []  # added since the last step: they join at the next one
        self.requests: dict[Hashable, Row] = {}  # rows not yet finished or removed
        self._no_ids = torch.zeros(0, 0, dtype=torch.long, device=self.device)

    def __len__(self) -> int:
        """Requests decoding: running, or joining at the next step."""
        return len(self.requests)

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self)

    def warm_up(self) -> None:
        """With compile: compile the step for every size now rather than at a request's step."""
        if isinstance(self.step_fn, BucketedStep):
            self.step_fn.warm_up()

    @torch.no_grad()
    def add(self, request_id: Hashable, prompt_ids: Sequence[int], options: GenerationOptions,
            label: str | None = None, top_logprobs: int = 0) -> Row:
        """A request for `prompt_ids` (after the label token `<label:L>` when `label` is given): it joins the
        batch at the next step, which prefills it and whose events bring its first token (and, with
        `top_logprobs` k, the k likeliest tokens of each step). Raises SeqlabError for a bad request (beam
        search, a prompt that fills the context, bad options) and BatchFull when there is no free slot."""
        if request_id in self.requests:
            raise SeqlabError(f"request {request_id!r} is already in the batch")
        if len(self) >= self.max_batch:
            raise BatchFull(f"the batch has {self.max_batch} rows already")
        if options.num_beams > 1 or options.num_return_sequences != 1:
            raise SeqlabError("a continuous batch decodes one sequence per request by greedy search or sampling: "
                              "beam search and num_return_sequences > 1 run on generate()")
        ids = (build_prompt_ids(self.tokenizer, "", label) if label is not None else []) + list(prompt_ids)
        input_ids, _ = _check_inputs(torch.tensor([ids], dtype=torch.long).view(1, -1), None, self.device)
        max_new_tokens = _fit_context(self.model, len(ids), options.max_new_tokens)
        prefix = input_ids
        if self.model.is_encoder_decoder:
            prefix = torch.full((1, 1), int(self.model.bos_id), dtype=torch.long, device=self.device)
        row = Row(request_id, options, ids, prefix, max_new_tokens, self.model, self.tokenizer)
        row.top_logprobs = top_logprobs
        self.joining.append(row)
        self.requests[request_id] = row
        return row

    def remove(self, request_id: Hashable) -> None:
        """The request leaves (its client went away): its row is gone before the next step. Unknown or
        finished requests are ignored."""
        row = self.requests.pop(request_id, None)
        if row is None:
            return
        row.removed = True
        self.joining = [j for j in self.joining if j is not row]

    @torch.no_grad()
    def step(self) -> list[BatchEvent]:
        """One model step over the running rows and the joining rows' prefill, then every row's choice: an
        event per row."""
        self._drop_ended()
        logits = []
        if self.rows:
            tokens = torch.tensor([row.last_token for row in self.rows], device=self.device)  # (B,)
            if hasattr(self.model, "make_room"):
                self.state = self.model.make_room(self.state)
            step_logits, self.state = self.step_fn(tokens, self.state)  # (B, V)
            logits.append(step_logits)
        joining, self.joining = self.joining, []
        if joining:
            joining_logits, joining_state = self._prefill(joining)  # (J, V)
            logits.append(joining_logits)
        rows = self.rows + joining
        if not rows:
            return []
        all_logits = torch.cat(logits) if len(logits) > 1 else logits[0]  # (B, V)
        tokens, logprobs = self._choose(rows, all_logits)
        events = [row.advance(token, logprob) for row, token, logprob in zip(rows, tokens, logprobs, strict=True)]
        self._add_alternatives(rows, all_logits, events)
        if joining:
            self._join(joining, joining_state)
        for event in events:
            if event.final:
                del self.requests[event.request_id]
        return events

    def _choose(self, rows: list[Row], logits: Tensor) -> tuple[list[int], list[float]]:
        """Each row's token and its log-probability, from logits (B, V): `choose` once per group of rows."""
        groups: dict[Hashable, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.group, []).append(i)
        if len(groups) == 1:
            return self._choose_group(rows, logits)
        tokens, logprobs = [0] * len(rows), [0.0] * len(rows)
        for members in groups.values():
            group_logits = logits[members[0]:members[0] + 1] if len(members) == 1 else \
                logits.index_select(0, torch.tensor(members, device=logits.device))
            group_tokens, group_logprobs = self._choose_group([rows[i] for i in members], group_logits)
            for i, token, logprob in zip(members, group_tokens, group_logprobs, strict=True):
                tokens[i], logprobs[i] = token, logprob
        return tokens, logprobs

    def _choose_group(self, rows: list[Row], logits: Tensor) -> tuple[list[int], list[float]]:
        """`choose` for rows of one group (one row, or rows sharing processors that read no tokens)."""
        draws = [row.draw(logits) for row in rows]
        noise = None if draws[0] is None else draws[0] if len(draws) == 1 else torch.cat(draws)  # (N, V)
        first = rows[0]  # processors that do not read the tokens look at most at their number, equal in a group
        ids = first.ids[:, :first.length] if first.ids is not None else self._no_ids
        tokens, log_probs = choose(logits, first.processors, ids, noise)
        return tokens.tolist(), log_probs.gather(1, tokens[:, None])[:, 0].tolist()

    def _add_alternatives(self, rows: list[Row], logits: Tensor, events: list[BatchEvent]) -> None:
        """The rows that asked for them: their k likeliest tokens under the model (log softmax of the raw
        logits (B, V), as the events' log-probs)."""
        wanted = [i for i, row in enumerate(rows) if row.top_logprobs]
        if not wanted:
            return
        k = min(max(rows[i].top_logprobs for i in wanted), logits.shape[-1])
        log_probs = torch.log_softmax(logits[wanted].float(), dim=-1)  # (W, V)
        values, ids = (t.tolist() for t in log_probs.topk(k, dim=-1))
        for w, i in enumerate(wanted):
            events[i].top_logprobs = list(zip(ids[w], values[w], strict=True))[:rows[i].top_logprobs]

    def _prefill(self, rows: list[Row]) -> tuple[Tensor, Any]:
        """The rows' prompts in one batch, left-padded, through the model's prefill: logits (J, V), state.

        The cache is sized for the longest prompt and the largest max_new_tokens, within the context: a
        row that needs more slots than that gets them from `make_room` once the longest prompt's row ends."""
        if len(rows) == 1:
            input_ids, mask = torch.tensor([rows[0].prompt_ids], dtype=torch.long), None
        else:
            input_ids, mask = left_pad([row.prompt_ids for row in rows], getattr(self.tokenizer, "pad_id", 0))
        input_ids, mask = _check_inputs(input_ids, mask, self.device)
        cache_tokens = max(row.max_new_tokens for row in rows)
        if self.model.max_length is not None and not self.model.is_encoder_decoder:
            cache_tokens = min(cache_tokens, self.model.max_length - input_ids.shape[1])
        return self.model.prefill(input_ids, mask, cache_tokens)

    def _join(self, rows: list[Row], state: Any) -> None:
        """Merge the prefilled rows that go on (not those that ended at their first token) into the batch."""
        stay = [i for i, row in enumerate(rows) if row.finish_reason is None]
        if not stay:
            return
        if len(stay) < len(rows):
            state = self.model.reorder_state(state, torch.tensor(stay, dtype=torch.long, device=self.device))
        self.state = state if self.state is None else self.model.merge_states(self.state, state)
        self.rows += [rows[i] for i in stay]

    def _drop_ended(self) -> None:
        """Rows that ended or were removed leave the state; the last rows move into their places."""
        ended = [row.finish_reason is not None or row.removed for row in self.rows]
        if not any(ended):
            return
        order = _fill_holes(ended)
        self.state = self.model.reorder_state(self.state, torch.tensor(order, dtype=torch.long, device=self.device))
        self.rows = [self.rows[i] for i in order]


def _fill_holes(ended: list[bool]) -> list[int]:
    """The rows that stay, as an index for `reorder_state`: rows before the n-th keep their places and the
    ones after move into the holes, so that as few rows as possible move."""
    stay = [i for i, e in enumerate(ended) if not e]
    n = len(stay)
    order = list(range(n))
    holes = [i for i in range(n) if ended[i]]
    for hole, row in zip(holes, [i for i in stay if i >= n], strict=True):
        order[hole] = row
    return order


def _frozen(options: GenerationOptions) -> tuple:
    """The options that make a row's processors, hashable."""
    return tuple(_hashable(getattr(options, f.name)) for f in dataclasses.fields(options)
                 if f.name not in PER_ROW_OPTIONS)


def _hashable(value: Any) -> Hashable:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value
