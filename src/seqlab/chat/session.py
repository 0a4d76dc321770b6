"""A conversation with a trained model: the history, the decoding options, and the reply stream.

The model sees the last k turns (k = `history_turns`, the run's `data.history_turns`):

    encoder-decoder:  source = " <sep> ".join(turns[-k:])          (as the dialogue pairs were built)
    language model:   prompt = "\\n".join(turns[-k:]) + "\\n"          reply = the text up to the next newline

and every reply comes from `seqlab.decode.stream`, the one streaming generator, through the session's
`seqlab.safety.ReplyPolicy` (the confidence fallback and the output filter; by default neither). A reply is
one line: line breaks inside it become spaces. When max_new_tokens cut it short (finish_reason "length")
the chat shows `CUT_MARK` after it, and `/show` gives the last reply's finish_reason, confidence and what
the policy did.
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
from seqlab.safety import Reply, ReplyPolicy
from seqlab.safety.policy import with_banned_words

# options the session owns: the tokenizer's ids and the per-reply seed
FIXED_OPTIONS = ("eos_token_id", "pad_token_id", "seed")
SETTABLE = tuple(f.name for f in dataclasses.fields(GenerationOptions) if f.name not in FIXED_OPTIONS)
CUT_MARK = " …"  # shown after a reply that max_new_tokens cut short
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines() splits


class ChatSession:
    def __init__(self, model: Any, tokenizer: Any, options: GenerationOptions, history_turns: int = 1,
                 seed: int | None = None, policy: ReplyPolicy | None = None):
        if history_turns < 1:
            raise SeqlabError(f"history_turns must be >= 1, got {history_turns}")
        self.model = model
        self.tokenizer = tokenizer
        self.options = dataclasses.replace(options, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
        self.history_turns = history_turns
        self.seed = seed
        self.policy = policy or ReplyPolicy()
        self.turns: list[str] = []  # user, bot, user, bot, ...
        self.last: Reply | None = None  # the last complete reply, and what the policy did to it
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

    @property
    def finish_reason(self) -> str | None:
        """The last complete reply's: "stop", "length" (cut by max_new_tokens), "content_filter" (refused)."""
        return self.last.finish_reason if self.last else None

    def reply(self, user_text: str) -> Iterator[str]:
        """Stream the reply's pieces (no line breaks) through the policy; once it is complete, the exchange
        joins the history and `last` says how it ended and what the policy did."""
        user_text = " ".join(user_text.split())
        options = dataclasses.asdict(self.options)
        if self.seed is not None:  # a different, reproducible draw for every reply (and the same for a retry)
            options["seed"] = self.seed + len(self.turns) // 2
        if not self.is_encoder_decoder:
            options["stop_strings"] = [*self.options.stop_list, "\n"]
        prompt = self.prompt(user_text)
        self.last = None

        def start(banned: list[str]) -> ReplyLine:
            return ReplyLine(stream(self.model, self.tokenizer, prompt, **with_banned_words(options, banned)),
                             self.is_encoder_decoder)

        exact = self.options.num_beams == 1 and (self.seed is not None or not self.options.do_sample)
        replies = self.policy.apply_stream(start, exact_retries=exact)
        yield from replies
        assert replies.reply is not None
        self.turns += [user_text, " ".join(replies.reply.text.split())]
        self.last = replies.reply

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
        if self.policy.active:
            lines.append(self.policy.describe())
        if self.last is not None:
            lines.append(self._last_reply())
        return "\n".join(lines)

    def _last_reply(self) -> str:
        """The last reply's finish_reason, confidence and what the policy did."""
        last = self.last
        assert last is not None
        line = f"last reply: finish_reason {last.finish_reason}"
        if last.finish_reason == "length":
            line += f" (cut at max_new_tokens {self.options.max_new_tokens}, marked{CUT_MARK})"
        if last.confidence is not None:
            what = "beam score" if self.options.num_beams > 1 else "mean log-prob per token"
            line += f", confidence {last.confidence:.4g} ({what})"
        if self.policy.active:
            line += f", policy: {_policy_note(last)}"
        return line

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """{option: (value at the start, value now)} for every option changed since the session began."""
        options, history_turns = self._initial
        changed = {name: (getattr(options, name), getattr(self.options, name)) for name in SETTABLE
                   if getattr(options, name) != getattr(self.options, name)}
        if history_turns != self.history_turns:
            changed["history_turns"] = (history_turns, self.history_turns)
        return changed


class ReplyLine:
    """A reply stream as the chat shows it: one line (a language model's reply ends at its first line break;
    other line breaks become spaces), without the space a word tokenizer puts first; its `finish_reason`
    and `confidence` are the stream's."""

    def __init__(self, stream: Any, is_encoder_decoder: bool):
        self.stream = stream  # a seqlab.decode.stream.TextStream
        self.is_encoder_decoder = is_encoder_decoder
        self.finish_reason: str | None = None
        self.confidence: float | None = None

    def __iter__(self) -> Iterator[str]:
        started = False
        for piece in self.stream:
            piece = LINE_BREAKS.sub(" ", piece if self.is_encoder_decoder else piece.split("\n")[0])
            piece = piece if started else piece.lstrip()  # a word tokenizer's joining space
            if piece:
                started = True
                yield piece
        self.finish_reason, self.confidence = self.stream.finish_reason, self.stream.confidence


def _policy_note(reply: Reply) -> str:
    """What the policy did to a reply, without repeating the words it found."""
    found = f"{len(reply.flagged)} listed word{'s' * (len(reply.flagged) != 1)}"
    tries = f"{reply.tries} {'try' if reply.tries == 1 else 'tries'}"
    notes = {"none": "nothing to do", "masked": f"masked {found}",
             "regenerated": f"regenerated ({tries}, {found} banned)",
             "refused": f"refused after {tries} ({found})",
             "fallback": "fallback (confidence below the threshold)"}
    return notes[reply.action_taken]


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, (str, list)) else str(value)
