"""Streaming: text pieces as tokens are generated, never splitting a multi-byte character.

    for piece in stream(model, tokenizer, "ROMEO:", max_new_tokens=100, do_sample=True, seed=0):
        print(piece, end="", flush=True)

`seqlab generate --stream`, the chat and the server all read this one generator. Decoding is
incremental: each new piece is the text of a short window of recent tokens minus the text of the
same window without the new ones, held back while it ends in U+FFFD (a byte-level token that is only
part of a UTF-8 character). Beam search cannot know its best hypothesis before the end, so with
`num_beams > 1` the whole text comes as one piece when the search finishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from seqlab.decode.generate import generate, parse_options, prepare, token_steps
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


def stream(model: Any, tokenizer: Any, prompt: str, *, label: str | None = None, compile_step: bool = False,
           **options: Any) -> Iterator[str]:
    """Yield the generated text of `prompt` piece by piece (generation options and `compile_step` as in `generate`).

    The text stops right after a stop string; it never includes the prompt.
    """
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
        return
    decoding = prepare(model, input_ids, None, opts, tokenizer=tokenizer, streaming=True, compile_step=compile_step)
    detok = IncrementalDetokenizer(tokenizer, [] if model.is_encoder_decoder else ids[-1:])
    emitted = ""
    for tokens in token_steps(decoding):
        piece = detok.push(tokens.tolist())
        if piece:
            piece, stopped = cut_at_stop(emitted + piece, opts.stop_list)
            piece = piece[len(emitted):]
            emitted += piece
            if piece:
                yield piece
            if stopped:
                return
    tail = detok.flush()
    if tail:
        yield tail
