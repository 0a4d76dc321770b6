"""Streaming: text pieces as tokens are generated, never splitting a multi-byte character.

    for piece in stream(model, tokenizer, "ROMEO:", max_new_tokens=100, do_sample=True, seed=0):
        print(piece, end="", flush=True)

`seqlab generate --stream`, the chat and the server all read this one generator. Decoding is
incremental: each new piece is the text of a short window of recent tokens minus the text of the
same window without the new ones, held back while it ends in U+FFFD (a byte-level token that is only
part of a UTF-8 character). Beam search cannot know its best hypothesis before the end, so with
`num_beams > 1` the whole text comes as one piece when the search finishes. Once the pieces run out,
the stream's `finish_reason` says whether the text ended ("stop") or was cut by max_new_tokens ("length"),
its `token_logprobs` give log p_model of each generated token and its `confidence` their mean (with beams,
the beam score), as in `GenerateOutput`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

import torch

from seqlab.decode.generate import finish_reasons, generate, parse_options, prepare, token_steps
from seqlab.decode.prompts import build_prompt_ids
from seqlab.decode.stopping import cut_at_stop
from seqlab.errors import SeqlabError

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text pieces whose concatenation is the decoded text.

    `context` ids (e.g. the prompt's last token) are decoded with the first new tokens but never
    emitted, so a tokenizer that joins tokens with spaces puts the right separator before them.
    """

    def __init__(self, tokenizer: Any, context: list[int] | None = None):
        self.tokenizer = tokenizer
        self.ids = list(context or [])
        self.prefix_offset = 0  # the window starts here ...
        self.read_offset = len(self.ids)  # ... and its text up to here has been emitted

    def push(self, token_ids: list[int]) -> str:
        self.ids.extend(token_ids)
        return self._emit(final=False)

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end stays U+FFFD)."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        done = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset])
        text = self.tokenizer.decode(self.ids[self.prefix_offset:])
        if len(text) <= len(done) or (text.endswith(REPLACEMENT) and not final):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return text[len(done):]


class TextPieces:
    """The text of one generated sequence, piece by piece, as `stream` yields it: the pieces of an
    `IncrementalDetokenizer`, the text cut right after the first of `stops` (then `stopped` is set). The
    continuous batcher (seqlab.decode.batching) keeps one per row."""

    def __init__(self, tokenizer: Any, context: list[int], stops: list[str]):
        self.detokenizer = IncrementalDetokenizer(tokenizer, context)
        self.context = len(context)
        self.stops = stops
        self.text = ""  # emitted so far
        self.stopped = False

    def push(self, token_ids: list[int]) -> str:
        """The text the new tokens complete ("" while a character is incomplete)."""
        piece = self.detokenizer.push(token_ids)
        return self._emit(piece) if piece else ""

    def finish(self) -> str:
        """At the end of the sequence, what was held back (the engine may stop within a held-back character)."""
        return self._emit(self.detokenizer.flush())

    @property
    def token_ids(self) -> list[int]:
        """Every token pushed."""
        return self.detokenizer.ids[self.context:]

    def _emit(self, piece: str) -> str:
        text, self.stopped = cut_at_stop(self.text + piece, self.stops)
        piece, self.text = text[len(self.text):], text
        return piece


class Ending(NamedTuple):
    """How a stream's text ended, known once its pieces run out."""

    finish_reason: str  # "stop" or "length"
    token_logprobs: list[float]  # log p_model of each generated token, EOS included
    confidence: float  # their mean; with beams, the beam score


class TextStream:
    """The pieces of one generated text, to iterate once; then `finish_reason` says how it ended: "stop" (EOS
    or a stop string) or "length" (max_new_tokens ran out), as in `GenerateOutput.finish_reasons`, and
    `confidence` / `token_logprobs` how sure the model was, as in `GenerateOutput`."""

    def __init__(self, pieces: Generator[str, None, Ending]):
        self._pieces = pieces
        self.finish_reason: str | None = None  # these three are set when the pieces run out
        self.confidence: float | None = None
        self.token_logprobs: list[float] | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._pieces)
        except StopIteration as end:
            self.finish_reason, self.token_logprobs, self.confidence = end.value
            raise StopIteration from None


def stream(model: Any, tokenizer: Any, prompt: str, *, label: str | None = None, compile_step: bool = False,
           **options: Any) -> TextStream:
    """Yield the generated text of `prompt` piece by piece (generation options and `compile_step` as in `generate`).

    The text stops right after a stop string; it never includes the prompt. Once the pieces run out, the
    returned stream's `finish_reason` is "stop" or "length", and its `confidence` and `token_logprobs` are set.
    """
    return TextStream(_pieces(model, tokenizer, prompt, label, compile_step, options))


def _pieces(model: Any, tokenizer: Any, prompt: str, label: str | None, compile_step: bool,
            options: dict[str, Any]) -> Generator[str, None, Ending]:
    """`stream`'s pieces; returns how the text ended."""
    opts = parse_options(options)
    if opts.num_return_sequences != 1:
        raise SeqlabError("streaming produces one sequence: num_return_sequences must be 1")
    ids = build_prompt_ids(tokenizer, prompt, label)
    input_ids = torch.tensor([ids], dtype=torch.long)
    if opts.num_beams > 1:
        out = generate(model, input_ids, tokenizer=tokenizer, compile_step=compile_step, **options)
        start = 1 if model.is_encoder_decoder else len(ids)
        text, _ = cut_at_stop(tokenizer.decode(out.sequences[0, start:].tolist()), opts.stop_list)
        if text:
            yield text
        return Ending(out.finish_reasons[0], out.token_logprobs[0, :int(out.lengths[0])].tolist(), out.confidence[0])
    decoding = prepare(model, input_ids, None, opts, tokenizer=tokenizer, streaming=True, compile_step=compile_step)
    text, logprobs = TextPieces(tokenizer, detokenizer_context(model, ids), opts.stop_list), []
    for tokens, token_logprobs in token_steps(decoding):
        piece = text.push(tokens.tolist())
        logprobs.append(float(token_logprobs[0]))
        if piece:
            yield piece
        if text.stopped:
            return Ending("stop", logprobs, _mean(logprobs))
    if tail := text.finish():
        yield tail
    generated = decoding.prefix.new_tensor([text.token_ids])  # (1, new): every token pushed
    sequence = torch.cat([decoding.prefix, generated], dim=1)  # (1, P + new)
    return Ending(finish_reasons(decoding, sequence)[0], logprobs, _mean(logprobs))


def detokenizer_context(model: Any, prompt_ids: list[int]) -> list[int]:
    """What the generated text is decoded after: the prompt's last token (the target has none of its own)."""
    return [] if model.is_encoder_decoder else prompt_ids[-1:]


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)
