"""What a worker decodes (`GenerationRequest`), what it gives back (`Event`), and one choice's way there.

A choice's text goes, in this order, through
1. the engine: `seqlab.decode.stream`, the one streaming generator (or, when the client wants token ids
   for log-probs, one `seqlab.decode.generate` call);
2. OpenAI's stop semantics (`seqlab.serve.stops`): the text ends before the first stop string;
3. the model's reply policy (`seqlab.safety.ReplyPolicy`, from the run's `safety` and `chat.fallback`
   config): the confidence fallback and the output filter. Its regenerate action starts the engine
   again with the flagged words banned; `completion_tokens` counts every generation's tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.decode import GenerationOptions, build_prompt_ids, generate, stream
from seqlab.decode.stopping import cut_at_stop
from seqlab.safety.policy import Generation, ReplyPolicy, with_banned_words
from seqlab.serve.stops import StopTrimmer, TrimmedStream


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str  # the engine's input: a completion prompt, or a conversation rendered as the run's prompt
    choices: list[GenerationOptions]  # one per choice, each with its own seed
    token_ids: bool = False  # each choice's end carries its token ids and log-probs (text in one piece)


@dataclass
class Event:
    """A piece of choice `index`'s text, or the choice's end: `finish_reason` ("stop" | "length" |
    "content_filter": the policy refused it), or `error` (a SeqlabError is the client's mistake)."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0  # at the end: tokens generated, EOS included, over every generation
    token_logprobs: list[float] | None = None  # at the end: log p_model of each token of the last generation
    token_ids: list[int] | None = None  # at the end, when the request asked for token ids
    confidence: float | None = None  # at the end: mean token log-prob (beam search: the beam score)
    error: BaseException | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None or self.error is not None


def streamed_choice(model: Any, tokenizer: Any, policy: ReplyPolicy, prompt: str, options: GenerationOptions,
                    index: int, compile_step: bool = False) -> Iterator[Event]:
    """One choice through `seqlab.decode.stream`, the stop strings and the policy: an event per piece, then
    its end."""
    started = []  # every generation's TextStream (regenerate makes more than one)

    def start(banned: list[str]) -> TrimmedStream:
        text = stream(model, tokenizer, prompt, compile_step=compile_step,
                      **with_banned_words(dataclasses.asdict(options), banned))
        started.append(text)
        return TrimmedStream(text, options.stop_list)

    replies = policy.apply_stream(start, exact_retries=options.num_beams == 1)
    for piece in replies:
        yield Event(index, text=piece)
    reply, last = replies.reply, started[-1]
    yield Event(index, finish_reason=reply.finish_reason, token_logprobs=last.token_logprobs,
                completion_tokens=sum(len(s.token_logprobs or []) for s in started), confidence=reply.confidence)


def generated_choice(model: Any, tokenizer: Any, policy: ReplyPolicy, prompt: str, options: GenerationOptions,
                     index: int, compile_step: bool = False) -> Iterator[Event]:
    """One choice through `seqlab.decode.generate` (its token ids known), the stop strings and the policy:
    its whole text, then its end."""
    ids = build_prompt_ids(tokenizer, prompt)
    start = 1 if model.is_encoder_decoder else len(ids)
    generations = []  # (token ids, their log-probs) of every generation

    def run(banned: list[str]) -> Generation:
        out = generate(model, torch.tensor([ids], dtype=torch.long), tokenizer=tokenizer, compile_step=compile_step,
                       **with_banned_words(dataclasses.asdict(options), banned))
        length = int(out.lengths[0])  # tokens generated, EOS included; the fill after it is not
        token_ids = out.sequences[0, start:start + length].tolist()
        generations.append((token_ids, out.token_logprobs[0, :length].tolist()))
        text, _ = cut_at_stop(tokenizer.decode(token_ids), options.stop_list)
        trimmer = StopTrimmer(options.stop_list)
        return Generation(trimmer.push(text) + trimmer.flush(), out.finish_reasons[0], out.confidence[0])

    reply = policy.apply(run([]), retry=run)
    if reply.text:
        yield Event(index, text=reply.text)
    token_ids, logprobs = generations[-1]
    yield Event(index, finish_reason=reply.finish_reason, completion_tokens=sum(len(g[0]) for g in generations),
                token_ids=token_ids, token_logprobs=logprobs, confidence=reply.confidence)

