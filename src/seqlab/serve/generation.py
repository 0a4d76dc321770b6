"""What a worker decodes (`GenerationRequest`), what it gives back (`Event`), and how one choice's tokens become
its events (`ChoiceReply`).

A choice's text goes, in this order, through
1. the engine: a row of the model's continuous batch (`seqlab.decode.batching`, whose rows give a token and
   its text per step), or, for beam search, one `seqlab.decode.generate` call (`beam_generation`);
2. OpenAI's stop semantics (`seqlab.serve.stops`): the text ends before the first stop string;
3. the model's reply policy (`seqlab.safety.ReplyPolicy`, from the run's `safety` and `chat.fallback`
   config), pushed a piece at a time (`ReplyPolicy.open`): the confidence fallback and the output filter.
   Its regenerate action asks for another generation with the flagged words banned and the same seed;
   `completion_tokens` counts every generation's tokens.

Log-probs, when the request asks for token ids: an event carries the tokens whose text it completes (token
i goes out with the first event whose text reaches the end of token i's text, so a token held back with its
text — the start of a stop string or of a listed word — waits with it), and the choice's last event
carries the rest (EOS, a stop string's tokens; all of them when the policy held the reply back). Joined,
the events' tokens are the reply's last generation: a regenerate retry repeats the tokens already sent
(same seed, same scores before the banned word), and those are not sent twice. With `top_logprobs` k,
each token comes with the k likeliest tokens of its step (`ContinuousBatch.add(top_logprobs=k)`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from seqlab.decode import GenerationOptions, generate
from seqlab.decode.stopping import cut_at_stop
from seqlab.safety.policy import ReplyPolicy
from seqlab.serve.stops import StopTrimmer


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str  # the engine's input: a completion prompt, or a conversation rendered as the run's prompt
    choices: list[GenerationOptions]  # one per choice, each with its own seed
    token_ids: bool = False  # events carry their tokens' ids and log-probs
    top_logprobs: int = 0  # and each token the likeliest tokens of its step, this many (with token_ids)


@dataclass
class Event:
    """A piece of choice `index`'s text, or the choice's end: `finish_reason` ("stop" | "length" |
    "content_filter": the policy refused it), or `error` (a SeqlabError is the client's mistake)."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0  # at the end: tokens generated, EOS included, over every generation
    token_logprobs: list[float] | None = None  # when asked for: log p_model of the tokens this event completes
    token_ids: list[int] | None = None  # when asked for: those tokens
    top_logprobs: list[list[tuple[int, float]]] | None = None  # when asked for: each one's likeliest (id, log-prob)
    confidence: float | None = None  # at the end: mean token log-prob (beam search: the beam score)
    error: BaseException | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None or self.error is not None


class Token(NamedTuple):
    id: int
    logprob: float  # log p_model(token)
    top: list[tuple[int, float]] | None = None  # when asked for: the likeliest tokens of its step (id, log-prob)


class Generation(NamedTuple):
    """A whole generation, as `beam_generation` gives it."""

    tokens: list[Token]  # EOS included
    text: str  # up to and including the first stop string
    finish_reason: str
    confidence: float


class ChoiceReply:
    """One choice of a request, its generations pushed token by token: the stop strings, the policy, and the
    events to send (see the module docstring). The worker starts each generation with `options()` and
    feeds it to `push`, then `end`; after `end`, `done` says whether the reply is complete or wants another
    generation (regenerate)."""

    def __init__(self, index: int, options: GenerationOptions, policy: ReplyPolicy, token_ids: bool = False,
                 top_logprobs: int = 0):
        self.index, self.base_options = index, options
        self.token_ids, self.top_logprobs = token_ids, top_logprobs
        self.session = policy.open(exact_retries=options.num_beams == 1)
        self.banned: list[str] = []  # regenerate's, added to the options' banned_words
        self.completion_tokens = 0
        self.sent = 0  # characters of the reply sent
        self.done = False
        self._start()

    def options(self) -> GenerationOptions:
        """The current generation's options: the choice's, with the words regenerate banned."""
        if not self.banned:
            return self.base_options
        return dataclasses.replace(self.base_options, banned_words=[*(self.base_options.banned_words or []),
                                                                     *self.banned])

    @property
    def stopped(self) -> bool:
        """The policy has decided this generation's text (a listed word under regenerate): end it now."""
        return self.session.stopped

    def push(self, tokens: list[Token], text: str) -> list[Event]:
        """The generation's next tokens and the text they complete: the events to send."""
        self.completion_tokens += len(tokens)
        piece = self.trimmer.push(text)
        self.fed += len(piece)
        if self.token_ids and not (self.repeated and self.fed <= self.repeated):
            self.pending += [(token, self.fed) for token in tokens]
        return self._send(self.session.feed(piece) if piece else "")

    def end(self, finish_reason: str | None, confidence: float | None) -> list[Event]:
        """The generation ended ("stop", "length"; None when it was stopped): the last events, the choice's
        final one unless the policy retries (then `done` stays False and the next generation starts)."""
        rest = self.trimmer.flush()
        out = self.session.feed(rest) if rest else ""
        outcome = self.session.finish(finish_reason, confidence)
        if outcome.reply is None:
            events = self._send(out + outcome.text)
            self.banned = outcome.retry or []
            self._start()
            return events
        self.done, reply = True, outcome.reply
        return [Event(self.index, out + outcome.text, reply.finish_reason, self.completion_tokens,
                      confidence=reply.confidence, **self._tokens([t for t, _ in self.pending]))]

    def _start(self) -> None:
        """A new generation: its stop strings, the text fed to the policy, the tokens not yet sent."""
        self.trimmer = StopTrimmer(self.base_options.stop_list)
        self.fed = 0  # characters of this generation's text fed to the policy
        self.pending: list[tuple[Token, int]] = []  # (token, where its text ends in `fed`)
        self.repeated = self.sent  # a retry's tokens whose text ends before here were sent already

    def _send(self, text: str) -> list[Event]:
        if not text:
            return []
        self.sent += len(text)
        ready = [t for t, end in self.pending if end <= self.sent]
        self.pending = self.pending[len(ready):]
        return [Event(self.index, text, **self._tokens(ready))]

    def _tokens(self, tokens: list[Token]) -> dict[str, Any]:
        """An event's token fields for these tokens (none unless the request asked for token ids)."""
        if not self.token_ids:
            return {}
        return {"token_ids": [t.id for t in tokens], "token_logprobs": [t.logprob for t in tokens],
                "top_logprobs": [t.top or [] for t in tokens] if self.top_logprobs else None}


def beam_generation(model: Any, tokenizer: Any, prompt_ids: list[int], options: GenerationOptions,
                    compile_step: bool = False) -> Generation:
    """One choice decoded by `seqlab.decode.generate` (beam search, which a continuous batch cannot run)."""
    out = generate(model, torch.tensor([prompt_ids], dtype=torch.long), tokenizer=tokenizer,
                   compile_step=compile_step, **dataclasses.asdict(options))
    start = 1 if model.is_encoder_decoder else len(prompt_ids)
    length = int(out.lengths[0])  # tokens generated, EOS included; the fill after it is not
    ids = out.sequences[0, start:start + length].tolist()
    text, _ = cut_at_stop(tokenizer.decode(ids), options.stop_list)
    tokens = [Token(i, logprob) for i, logprob in zip(ids, out.token_logprobs[0, :length].tolist(), strict=True)]
    return Generation(tokens, text, out.finish_reasons[0], out.confidence[0])
