"""`generate(model, input_ids, **options)`: the one entry point for greedy, sampling and beam search.

    out = generate(model, input_ids, attention_mask=mask, max_new_tokens=50, num_beams=4, eos_token_id=3)
    out.sequences         # (B * num_return_sequences, T + new): the prompt, then the generated tokens
    out.sequences_scores  # (B * num_return_sequences,) length-penalised beam scores (beam search only)
    out.first_step_seconds  # with compile_step: the first step's wall time (and the first choices'), compiling included
    out.finish_reasons    # per sequence: "stop" (EOS or a stop string) or "length" (max_new_tokens ran out)
    out.token_logprobs    # (B * num_return_sequences, new): log p_model of each generated token (0 after the end)
    out.confidence        # per sequence: the mean of its token log-probs; with beams, its beam score

`model` implements seqlab.decode.state.DecoderModel. Options have Hugging Face's names, meanings and
defaults (see seqlab.decode.options). For an encoder-decoder (`model.is_encoder_decoder`),
`input_ids` is the source and `.sequences` hold the target only, starting with the decoder start
token (`model.bos_id`) as in HF. After EOS (or a stop string) a sequence is padded with
`pad_token_id` (else the first EOS id). A sequence's finish reason is OpenAI's: "stop" when it ended by
EOS or a stop string, "length" when it was cut by max_new_tokens (or by the model's context).

A sequence's confidence is how sure the model was of it: with greedy search or sampling, the mean
log-probability of its tokens under the model's own distribution (log softmax of the raw logits, before
the processors), over the tokens it generated, EOS included and the fill after it excluded:
    confidence = (1 / n) sum_{t=1..n} log p_model(y_t | y_<t)
With beam search it is the beam's score (`sequences_scores`: the sum of the processed log-probabilities
over n ** length_penalty, the mean log-probability when length_penalty is 1 and no processor acts).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from seqlab.decode.banned_words import BannedWords, compile_ban_list
from seqlab.decode.beam import beam_search
from seqlab.decode.compiled import CompiledStep, cache_length, can_compile
from seqlab.decode.graphs import CapturedStep, sync_interval, use_fast_path
from seqlab.decode.options import GenerationOptions
from seqlab.decode.processors import (
    BadWords,
    ForcedEOS,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    ProcessorList,
    RepetitionPenalty,
    SuppressTokens,
    Temperature,
    TopK,
    TopP,
)
from seqlab.decode.search import Sampled, sample_tokens
from seqlab.decode.stopping import StopStrings
from seqlab.errors import SeqlabError

OPTION_NAMES = {f.name for f in fields(GenerationOptions)}
# a recurrent model has no context to cut max_new_tokens: this is its cap (800 KB of token ids per row)
RECURRENT_MAX_NEW_TOKENS = 100_000


@dataclass
class GenerateOutput:
    sequences: Tensor  # (B * num_return_sequences, P + new)
    sequences_scores: Tensor | None = None  # (B * num_return_sequences,), beam search only
    first_step_seconds: float | None = None  # compile_step only: the first step and choice, which compile (or reuse) graphs
    finish_reasons: list[str] = field(default_factory=list)  # per sequence: "stop" or "length"
    token_logprobs: Tensor | None = None  # (B * num_return_sequences, new) log p_model per token, 0 after the end
    confidence: list[float] = field(default_factory=list)  # per sequence: mean token log-prob, or the beam score
    lengths: Tensor | None = None  # (B * num_return_sequences,) tokens each sequence generated, EOS included


@dataclass
class Decoding:
    """Everything a search loop needs, after prefill and row expansion."""

    opts: GenerationOptions
    prefix: Tensor  # (N, P): prompt (decoder-only) or decoder start token (encoder-decoder), per row
    logits: Tensor  # (N, V) next-token logits after the prefix
    state: Any
    step: Any
    reorder: Any
    processors: ProcessorList
    max_new_tokens: int
    generator: torch.Generator | None
    stop: StopStrings | None
    sync_every: int


def parse_options(options: dict[str, Any]) -> GenerationOptions:
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise SeqlabError(f"unknown generation option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTION_NAMES))}")
    return GenerationOptions(**options)


def generate(model: Any, input_ids: Tensor, attention_mask: Tensor | None = None, *, tokenizer: Any = None,
             sync_every: int | None = None, compile_step: bool = False, **options: Any) -> GenerateOutput:
    """Generate continuations of `input_ids` (B, T); see the module docstring. `tokenizer` is needed for
    `stop_strings`; `sync_every` overrides how often the host checks for the end (default: every step on
    CPU, every 16 on CUDA); `compile_step` decodes a TransformerLM with the Inductor-compiled step (CPU;
    on CUDA recorded in the graph; seqlab.decode.compiled: a slow compile once per model and batch size,
    then faster steps)."""
    decoding = prepare(model, input_ids, attention_mask, parse_options(options), tokenizer=tokenizer,
                       sync_every=sync_every, compile_step=compile_step)
    opts, d = decoding.opts, decoding
    if opts.num_beams > 1:
        result = beam_search(d.step, d.reorder, d.prefix, d.logits, d.state, num_beams=opts.num_beams,
                             max_new_tokens=d.max_new_tokens, processors=d.processors, eos_ids=opts.eos_ids,
                             fill_id=opts.fill_id, length_penalty=opts.length_penalty,
                             early_stopping=opts.early_stopping, num_return_sequences=opts.num_return_sequences,
                             do_sample=opts.do_sample, generator=d.generator, stop=d.stop, sync_every=d.sync_every)
        sequences, scores, token_logprobs, lengths = result.sequences, result.scores, result.token_logprobs, result.lengths
        confidence = scores.tolist()
    else:
        sequences, token_logprobs, lengths = drain(token_steps(decoding))
        scores, confidence = None, (token_logprobs.sum(dim=1) / lengths.clamp(min=1)).tolist()
    return GenerateOutput(sequences, scores, getattr(d.step, "first_step_seconds", None),
                          finish_reasons(decoding, sequences), token_logprobs, confidence, lengths)


def finish_reasons(d: Decoding, sequences: Tensor) -> list[str]:
    """Per row of `sequences` (N, P + new), the prefix first: "stop" when its new tokens hold an EOS id or its
    text a stop string (a row only ever ends early that way), else "length"."""
    new = sequences[:, d.prefix.shape[1]:]  # (N, new)
    ended = torch.zeros(new.shape[0], dtype=torch.bool, device=new.device)
    if d.opts.eos_ids:
        ended |= torch.isin(new, torch.tensor(d.opts.eos_ids, device=new.device)).any(dim=1)
    if d.stop is not None:
        ended |= d.stop(sequences)
    return ["stop" if e else "length" for e in ended.tolist()]


def token_steps(d: Decoding) -> Generator[tuple[Tensor, Tensor], None, Sampled]:
    """The greedy / sampling loop for a prepared decoding: yields each step's tokens and their log-probs,
    returns the sequences, every token's log-prob and each row's length."""
    return sample_tokens(d.step, d.prefix, d.logits, d.state, max_new_tokens=d.max_new_tokens,
                         processors=d.processors, eos_ids=d.opts.eos_ids, fill_id=d.opts.fill_id,
                         do_sample=d.opts.do_sample, generator=d.generator, stop=d.stop, sync_every=d.sync_every)


def drain(steps: Generator[tuple[Tensor, Tensor], None, Sampled]) -> Sampled:
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


@torch.no_grad()
def prepare(model: Any, input_ids: Tensor, attention_mask: Tensor | None, opts: GenerationOptions, *,
            tokenizer: Any = None, sync_every: int | None = None, streaming: bool = False,
            compile_step: bool = False) -> Decoding:
    """Check the inputs, prefill the model, and expand each input into num_beams / num_return_sequences rows."""
    device = _model_device(model)
    input_ids, attention_mask = _check_inputs(input_ids, attention_mask, device)
    if opts.stop_strings is not None and tokenizer is None:
        raise SeqlabError("stop_strings need the tokenizer: pass tokenizer=...")
    if opts.banned_words is not None and tokenizer is None:
        raise SeqlabError("banned_words need the tokenizer: pass tokenizer=...")
    B, T = input_ids.shape
    max_new_tokens = _fit_context(model, T, opts.max_new_tokens)
    compiled = compile_step and can_compile(model)
    cache_tokens = cache_length(model) - T if compiled else max_new_tokens  # compiled: one cache shape for all
    logits, state = model.prefill(input_ids, attention_mask, cache_tokens)
    if model.is_encoder_decoder:
        prefix = torch.full((B, 1), int(model.bos_id), dtype=torch.long, device=device)
    else:
        prefix = input_ids
    rows = opts.num_beams if opts.num_beams > 1 else opts.num_return_sequences
    ignore_prefix = None
    if attention_mask is not None and not model.is_encoder_decoder:
        ignore_prefix = (attention_mask != 0).int().argmax(dim=1)  # left padding, skipped by the repetition penalty
    if rows > 1:
        index = torch.arange(B, device=device).repeat_interleave(rows)  # (B * rows,)
        state = model.reorder_state(state, index)
        logits, prefix = logits.index_select(0, index), prefix.index_select(0, index)
        ignore_prefix = None if ignore_prefix is None else ignore_prefix.index_select(0, index)
    reorder = model.reorder_state
    if use_fast_path(model, device):
        step = CapturedStep(model, compiled=compiled)
    elif compiled:  # beam search reorders a table of cache rows instead of the cache (CompiledStep.reorder)
        step = CompiledStep(model, beams=opts.num_beams > 1)
        reorder = step.reorder
    else:
        step = model.step
    generator = None
    if opts.seed is not None:
        generator = torch.Generator(device=device).manual_seed(opts.seed)
    stop = StopStrings(opts.stop_list, tokenizer, prefix.shape[1]) if opts.stop_strings is not None else None
    return Decoding(opts, prefix, logits, state, step, reorder,
                    build_processors(opts, prefix.shape[1], max_new_tokens, ignore_prefix, tokenizer),
                    max_new_tokens, generator, stop,
                    sync_every if sync_every is not None else sync_interval(device, streaming))


def build_processors(opts: GenerationOptions, prompt_length: int, max_new_tokens: int,
                     ignore_prefix: Tensor | None = None, tokenizer: Any = None) -> ProcessorList:
    """The active processors, in Hugging Face's order; options left at their neutral value add nothing.
    `tokenizer` compiles `banned_words` (cached per tokenizer and list)."""
    eos = opts.eos_ids
    chain = ProcessorList()
    if opts.repetition_penalty != 1.0:
        chain.append(RepetitionPenalty(opts.repetition_penalty, ignore_prefix))
    if opts.no_repeat_ngram_size > 0:
        chain.append(NoRepeatNGram(opts.no_repeat_ngram_size))
    if opts.bad_words_ids:
        chain.append(BadWords(opts.bad_words_ids, eos))
    if opts.banned_words is not None:
        chain.append(BannedWords(compile_ban_list(opts.banned_words, tokenizer, eos), prompt_length, max_new_tokens))
    if opts.min_new_tokens > 0 and eos:
        chain.append(MinNewTokens(prompt_length, opts.min_new_tokens, eos))
    if opts.forced_eos_token_id is not None:
        forced = [opts.forced_eos_token_id] if isinstance(opts.forced_eos_token_id, int) else opts.forced_eos_token_id
        chain.append(ForcedEOS(prompt_length + max_new_tokens, forced))
    if opts.suppress_tokens:
        chain.append(SuppressTokens(opts.suppress_tokens))
    if opts.do_sample:
        # beam sampling keeps one token more than there are EOS ids, so a beam can always continue
        keep = max(2, len(eos) + 1) if opts.num_beams > 1 else 1
        if opts.temperature != 1.0:
            chain.append(Temperature(opts.temperature))
        if opts.top_k != 0:
            chain.append(TopK(opts.top_k, keep))
        if opts.top_p < 1.0:
            chain.append(TopP(opts.top_p, keep))
        if opts.min_p > 0.0:
            chain.append(MinP(opts.min_p, keep))
    return chain


def _model_device(model: Any) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_inputs(input_ids: Any, attention_mask: Any, device: torch.device) -> tuple[Tensor, Tensor | None]:
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise SeqlabError("input_ids must be a LongTensor of shape (batch, length)")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise SeqlabError(f"input_ids must hold at least one token per row, got shape {tuple(input_ids.shape)}")
    if attention_mask is not None:
        if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
            raise SeqlabError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}")
        if bool((attention_mask.sum(dim=1) == 0).any()):
            raise SeqlabError("every prompt needs at least one token (an attention_mask row is all zeros)")
        attention_mask = attention_mask.to(device)
        if bool(attention_mask.all()):
            attention_mask = None  # no padding: the plain path
    return input_ids.to(device), attention_mask


def _fit_context(model: Any, length: int, max_new_tokens: int) -> int:
    """max_new_tokens, shortened so that the sequence fits the model's context; a prompt that fills it is an error.

    A model without a context (recurrent: `max_length` None) could go on for ever, but the search keeps
    every token in buffers sized by max_new_tokens: more than RECURRENT_MAX_NEW_TOKENS is refused."""
    limit = getattr(model, "max_length", None)
    if limit is None:
        if max_new_tokens > RECURRENT_MAX_NEW_TOKENS:
            raise SeqlabError(f"max_new_tokens {max_new_tokens:,} is more than a recurrent model "
                              f"({type(model).__name__}) generates in one call: at most {RECURRENT_MAX_NEW_TOKENS:,}, "
                              "since the tokens are kept in buffers of that length; ask for fewer (--max-new-tokens)")
        return max_new_tokens
    if model.is_encoder_decoder:
        if length > limit:
            raise SeqlabError(f"source of {length} tokens is longer than the model's context of {limit} tokens")
        return min(max_new_tokens, limit - 1)  # the target starts with the decoder start token
    if length >= limit:
        raise SeqlabError(f"prompt of {length} tokens does not fit the model's context of {limit} tokens "
                          f"(at most {limit - 1} leave room to generate)")
    return min(max_new_tokens, limit - length)
