"""A conversation with a trained model: the history, the decoding options, and the reply stream.

The model sees the last k turns (k = `history_turns`, the run's `data.history_turns`):

    encoder-decoder:  source = " <sep> ".join(turns[-k:])          (as the dialogue pairs were built)
    language model:   prompt = "\\n".join(turns[-k:]) + "\\n"          reply = the text up to the next newline

and every reply comes from `seqlab.decode.stream`, the one streaming generator. A reply is one line: line
breaks inside it become spaces. When max_new_tokens cut it short (finish_reason "length") the chat shows
`CUT_MARK` after it, and `/show` gives the last reply's finish_reason.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterator
from typing import Any

from seqlab.config import coerce
from seqlab.data.corpora.dialogue import SEPARATOR
from seqlab.decode import GenerationOptions, stream
from seqlab.errors import SeqlabError

# options the session owns: the tokenizer's ids and the per-reply seed
FIXED_OPTIONS = ("eos_token_id", "pad_token_id", "seed")
SETTABLE = tuple(f.name for f in dataclasses.fields(GenerationOptions) if f.name not in FIXED_OPTIONS)
CUT_MARK = " …"  # shown after a reply that max_new_tokens cut short
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines() splits


class ChatSession:
    def __init__(self, model: Any, tokenizer: Any, options: GenerationOptions, history_turns: int = 1,
                 seed: int | None = None):
        if history_turns < 1:
            raise SeqlabError(f"history_turns must be >= 1, got {history_turns}")
        self.model = model
        self.tokenizer = tokenizer
        self.options = dataclasses.replace(options, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
        self.history_turns = history_turns
        self.seed = seed
        self.turns: list[str] = []  # user, bot, user, bot, ...
        self.finish_reason: str | None = None  # the last complete reply's: "stop" or "length"
        self._initial = (self.options, history_turns)  # what /show compares with, to list the changes

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.is_encoder_decoder)

    def prompt(self, user_text: str) -> str:
        """What the model is given for the reply to `user_text`."""
        context = [*self.turns, user_text][-self.history_turns:]
        if self.is_encoder_decoder:
            return SEPARATOR.join(context)
        return "\n".join(context) + "\n"

    def reply(self, user_text: str) -> Iterator[str]:
        """Stream the reply's pieces (no line breaks); once it is complete, the exchange joins the history and
        `finish_reason` says whether it ended ("stop") or max_new_tokens cut it ("length")."""
        user_text = " ".join(user_text.split())
        options = dataclasses.asdict(self.options)
        if self.seed is not None:  # a different, reproducible draw for every reply
            options["seed"] = self.seed + len(self.turns) // 2
        if not self.is_encoder_decoder:
            options["stop_strings"] = [*self.options.stop_list, "\n"]
        pieces = []
        self.finish_reason = None
        text = stream(self.model, self.tokenizer, self.prompt(user_text), **options)
        for piece in text:
            piece = LINE_BREAKS.sub(" ", piece if self.is_encoder_decoder else piece.split("\n")[0])
            piece = piece if pieces else piece.lstrip()  # a word tokenizer's joining space
            if piece:
                pieces.append(piece)
                yield piece
        self.turns += [user_text, " ".join("".join(pieces).split())]
        self.finish_reason = text.finish_reason

    def reset(self) -> None:
        self.turns = []

    def set_option(self, name: str, value: Any) -> None:
        """Change one decoding option (a `GenerationOptions` field), checked before it is kept."""
        if name == "history_turns":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SeqlabError(f"history_turns must be an integer >= 1, got {value!r}")
            self.history_turns = value
            return
        if name not in SETTABLE:
            raise SeqlabError(f"unknown option {name!r}; options: history_turns, {', '.join(SETTABLE)}")
        value = coerce(value, typing.get_type_hints(GenerationOptions)[name], name)
        self.options = dataclasses.replace(self.options, **{name: value})

    def set_strategy(self, name: str, beams: int | None = None) -> None:
        """greedy, sample, or beam N (default 5)."""
        if name == "greedy":
            changes = {"do_sample": False, "num_beams": 1}
        elif name == "sample":
            changes = {"do_sample": True, "num_beams": 1}
        elif name == "beam":
            changes = {"do_sample": False, "num_beams": beams or 5}
        else:
            raise SeqlabError(f"unknown strategy {name!r}; choose greedy, sample or beam N")
        self.options = dataclasses.replace(self.options, **changes)

    def describe(self) -> str:
        """The decoding settings; then, when there are any, the options changed since the start (with /set or
        /strategy) and the last reply's finish_reason."""
        o = self.options
        strategy = f"beam {o.num_beams}" if o.num_beams > 1 else "sample" if o.do_sample else "greedy"
        extra = f", temperature {o.temperature}, top_k {o.top_k}, top_p {o.top_p}" if o.do_sample else ""
        lines = [f"strategy {strategy}{extra}, max_new_tokens {o.max_new_tokens}, history_turns {self.history_turns}"]
        changed = self.changes()
        if changed:
            lines.append("changed: " + ", ".join(f"{name} {_shown(new)} (was {_shown(old)})"
                                                 for name, (old, new) in changed.items()))
        if self.finish_reason == "length":
            lines.append(f"last reply: finish_reason length (cut at max_new_tokens {o.max_new_tokens}, "
                         f"marked{CUT_MARK})")
        elif self.finish_reason is not None:
            lines.append(f"last reply: finish_reason {self.finish_reason}")
        return "\n".join(lines)

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """{option: (value at the start, value now)} for every option changed since the session began."""
        options, history_turns = self._initial
        changed = {name: (getattr(options, name), getattr(self.options, name)) for name in SETTABLE
                   if getattr(options, name) != getattr(self.options, name)}
        if history_turns != self.history_turns:
            changed["history_turns"] = (history_turns, self.history_turns)
        return changed


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, (str, list)) else str(value)
