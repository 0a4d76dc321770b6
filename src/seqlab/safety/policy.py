"""`ReplyPolicy`: what happens to a reply before anyone sees it — the confidence fallback, then the output
filter and its action. `seqlab generate`, `seqlab chat` and the server all apply one.

    policy = ReplyPolicy(filter="words", action="regenerate", fallback_threshold=-2.5)
    reply = policy.reply(model, tokenizer, "hello", max_new_tokens=40)      # a Reply
    reply.text, reply.action_taken, reply.finish_reason, reply.confidence
    for piece in (replies := policy.stream(model, tokenizer, "hello", max_new_tokens=40)):
        print(piece, end="")
    replies.reply.action_taken

In order, for each generation:

1. fallback: a reply whose confidence (`GenerateOutput.confidence`: the mean log-prob per token, the beam
   score with beams) is below `fallback_threshold` becomes `fallback_reply` (action_taken "fallback").
2. filter (`seqlab.safety.filter`; "words": seqlab's English and Chinese lists and `extra_words`;
   "profanity": those and the words `seqlab.safety.classifier` flags). A reply with a listed word gets
   - mask: each listed word becomes asterisks of its length ("masked");
   - refuse: the `refusal` instead, finish_reason "content_filter" (OpenAI's value) ("refused");
   - regenerate: a new generation with the words found banned (`GenerationOptions.banned_words`), at most
     `max_tries` generations in all, then the refusal ("regenerated" when a retry came out clean).

Streams. With mask, pieces are held back only while a listed word could still begin in them
(`seqlab.safety.streaming`). With regenerate, the text before a listed word is sent; the retry, which bans
the word, repeats that text exactly when decoding is greedy or samples with a fixed seed (the ban changes
the scores only where the word would complete, and the sampler draws the same noise at every step), so
the stream skips it and goes on. A retry that does not repeat it, and a reply that runs out of tries
after text was sent, end the stream with the refusal after that text. The fallback (the confidence is
known only at the end), refuse (a refused reply is only the refusal) and regenerate without exact
retries (beam search) hold the whole reply back and send it as one piece.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from seqlab.errors import SeqlabError
from seqlab.safety.filter import Offence, Scan, WordFilter, mask
from seqlab.safety.normalise import fold_text
from seqlab.safety.streaming import clean_prefixes, mask_stream

FILTERS = ("off", "words", "profanity")
ACTIONS = ("mask", "regenerate", "refuse")
CONTENT_FILTER = "content_filter"  # the finish_reason of a refused reply, as in OpenAI's API


@dataclass
class Generation:
    """One generated reply as the policy sees it."""

    text: str
    finish_reason: str | None = None  # "stop" or "length"
    confidence: float | None = None  # mean log-prob per token (the beam score with beams)


@dataclass
class Reply:
    """A reply after the policy, and what the policy did to it."""

    text: str
    action_taken: str = "none"  # none | masked | regenerated | refused | fallback
    finish_reason: str | None = None  # stop | length | content_filter
    confidence: float | None = None  # the last generation's
    flagged: list[str] = field(default_factory=list)  # the listed words found, in every generation
    tries: int = 1  # generations made


class PieceStream(Protocol):
    """A stream of text pieces whose `finish_reason` and `confidence` are set when they run out
    (`seqlab.decode.stream.TextStream`)."""

    finish_reason: str | None
    confidence: float | None

    def __iter__(self) -> Iterator[str]: ...


Retry = Callable[[list[str]], Generation]  # banned words -> a new generation
Start = Callable[[list[str]], PieceStream]  # banned words -> a new stream


class ReplyStream:
    """A reply's pieces under a policy, to iterate once; then `reply` (a `Reply`) says what was done."""

    def __init__(self, pieces: Generator[str, None, Reply]):
        self._pieces = pieces
        self.reply: Reply | None = None  # set when the pieces run out

    def __iter__(self) -> ReplyStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._pieces)
        except StopIteration as end:
            self.reply = end.value
            raise StopIteration from None

    def finish(self) -> Reply:
        """Read the rest of the pieces; the Reply."""
        for _ in self:
            pass
        assert self.reply is not None
        return self.reply


class ReplyPolicy:
    """The fallback and the output filter (see the module docstring). `extra_words`: more words or phrases
    to filter (a `safety.words` file's)."""

    def __init__(self, filter: str = "off", action: str = "mask", *, extra_words: list[str] | None = None,
                 refusal: str = "Sorry, I can't say that.", max_tries: int = 3,
                 fallback_threshold: float | None = None,
                 fallback_reply: str = "Sorry, I don't know that yet."):
        if filter not in FILTERS:
            raise SeqlabError(f"safety filter must be one of {', '.join(FILTERS)}, got {filter!r}")
        if action not in ACTIONS:
            raise SeqlabError(f"safety action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise SeqlabError(f"max_tries must be an integer >= 1, got {max_tries!r}")
        if fallback_threshold is not None and (isinstance(fallback_threshold, bool)
                                               or not isinstance(fallback_threshold, (int, float))):
            raise SeqlabError(f"the fallback threshold must be a number, got {fallback_threshold!r}")
        self.filter, self.action, self.refusal, self.max_tries = filter, action, refusal, max_tries
        self.fallback_threshold, self.fallback_reply = fallback_threshold, fallback_reply
        self.words = _word_filter(filter, extra_words or [])

    @classmethod
    def from_config(cls, config: Any, overrides: dict[str, Any] | None = None) -> ReplyPolicy:
        """The policy of a run's config (`safety`, `chat.fallback`), after `overrides` ({dotted key: value},
        e.g. a command's flags {"safety.action": "refuse"}), which are checked as the config's keys are."""
        safety, fallback = _overridden(config, overrides or {})
        extra = None
        if safety.words is not None and safety.filter != "off":
            from seqlab.safety.word_lists import read_user_words

            extra = read_user_words(safety.words)
        return cls(safety.filter, safety.action, extra_words=extra, refusal=safety.refusal,
                   max_tries=safety.max_tries, fallback_threshold=fallback.threshold,
                   fallback_reply=fallback.reply)

    @property
    def active(self) -> bool:
        return self.words is not None or self.fallback_threshold is not None

    def describe(self) -> str:
        """One line: the filter, its action and the fallback."""
        parts = [f"safety filter {self.filter}" + (f" (action {self.action})" if self.words else "")]
        if self.fallback_threshold is not None:
            parts.append(f"fallback below confidence {self.fallback_threshold}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ complete replies

    def apply(self, first: Generation, retry: Retry | None = None) -> Reply:
        """The reply to give for the generation `first`; `retry(banned_words)` generates again for regenerate
        (without it, regenerate refuses)."""
        generation, banned, flagged, tries = first, [], [], 1
        while True:
            if self._falls_back(generation):
                return Reply(self.fallback_reply, "fallback", "stop", generation.confidence, flagged, tries)
            offences = self.words.find(generation.text) if self.words else []
            if not offences:
                return Reply(generation.text, _clean(tries), generation.finish_reason, generation.confidence,
                             flagged, tries)
            flagged += [o.word for o in offences]
            if self.action == "mask":
                return Reply(mask(generation.text, offences), "masked", generation.finish_reason,
                             generation.confidence, flagged, tries)
            if self.action == "refuse" or retry is None or tries >= self.max_tries:
                return Reply(self.refusal, "refused", CONTENT_FILTER, generation.confidence, flagged, tries)
            banned = _ban(banned, offences)
            generation, tries = retry(banned), tries + 1

    def reply(self, model: Any, tokenizer: Any, prompt: str, **options: Any) -> Reply:
        """The reply to `prompt` (options as `seqlab.decode.stream`'s), through `stream`."""
        return self.stream(model, tokenizer, prompt, **options).finish()

    # ------------------------------------------------------------------ streams

    def apply_stream(self, start: Start, exact_retries: bool = True) -> ReplyStream:
        """The reply's pieces from `start(banned_words)`, a new stream per generation. `exact_retries`: a
        retry repeats the text before the banned word (greedy, or sampling with a seed; not beam search)."""
        if not self.active:
            return ReplyStream(_unfiltered(start([])))
        if self.fallback_threshold is not None or self.action == "refuse" or (
                self.action == "regenerate" and not exact_retries):
            return ReplyStream(self._held_back(start))
        if self.action == "mask":
            return ReplyStream(self._masked(start([])))
        return ReplyStream(self._regenerated(start))

    def stream(self, model: Any, tokenizer: Any, prompt: str, *, label: str | None = None,
               **options: Any) -> ReplyStream:
        """The reply to `prompt` piece by piece (options as `seqlab.decode.stream`'s). Sampling without a seed
        gets a random one, so that regenerate's retries repeat the text already sent."""
        from seqlab.decode import stream

        if options.get("do_sample") and options.get("seed") is None:
            options = {**options, "seed": random.randrange(2**63)}
        exact = options.get("num_beams", 1) == 1

        def start(banned: list[str]) -> PieceStream:
            return stream(model, tokenizer, prompt, label=label, **with_banned_words(options, banned))

        return self.apply_stream(start, exact_retries=exact)

    def _held_back(self, start: Start) -> Generator[str, None, Reply]:
        reply = self.apply(_collect(start([])), lambda banned: _collect(start(banned)))
        if reply.text:
            yield reply.text
        return reply

    def _masked(self, pieces: PieceStream) -> Generator[str, None, Reply]:
        assert self.words is not None
        scan = yield from mask_stream(pieces, self.words)
        return Reply(mask(scan.text, scan.offences), "masked" if scan.offences else "none",
                     pieces.finish_reason, pieces.confidence, [o.word for o in scan.offences])

    def _regenerated(self, start: Start) -> Generator[str, None, Reply]:
        assert self.words is not None
        sent, banned, flagged = "", [], []
        for tries in range(1, self.max_tries + 1):
            pieces, scan = start(banned), Scan(self.words)
            for clean in clean_prefixes(pieces, scan):
                if not (clean.startswith(sent) or sent.startswith(clean)):  # a retry that does not repeat it
                    return (yield from self._refused(sent, pieces, flagged, tries))
                if len(clean) > len(sent):
                    yield clean[len(sent):]
                    sent = clean
                if scan.offences:
                    break
            if not scan.offences:
                if sent != scan.text:  # a retry that ended before repeating what was sent
                    return (yield from self._refused(sent, pieces, flagged, tries))
                return Reply(sent, _clean(tries), pieces.finish_reason, pieces.confidence, flagged, tries)
            flagged += [o.word for o in scan.offences]
            banned = _ban(banned, scan.offences)
        return (yield from self._refused(sent, pieces, flagged, tries))

    def _refused(self, sent: str, pieces: PieceStream, flagged: list[str],
                 tries: int) -> Generator[str, None, Reply]:
        """The refusal, after the text already `sent` (if any)."""
        refusal = (" " if sent and not sent[-1].isspace() else "") + self.refusal
        yield refusal
        return Reply(sent + refusal, "refused", CONTENT_FILTER, pieces.confidence, flagged, tries)

    def _falls_back(self, generation: Generation) -> bool:
        return (self.fallback_threshold is not None and generation.confidence is not None
                and generation.confidence < self.fallback_threshold)


def with_banned_words(options: dict[str, Any], banned: list[str]) -> dict[str, Any]:
    """Generation `options` with `banned` added to their banned_words."""
    if not banned:
        return options
    return {**options, "banned_words": [*(options.get("banned_words") or []), *banned]}


def _word_filter(name: str, extra_words: list[str]) -> WordFilter | None:
    if name == "off":
        return None
    from seqlab.safety.word_lists import LANGUAGES, default_words

    words = [w for language in LANGUAGES for w in default_words(language)] + list(extra_words)
    if name == "profanity":
        from seqlab.safety.classifier import classifier_words

        words += classifier_words()
    return WordFilter(words)


def _overridden(config: Any, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """The config's SafetyConfig and FallbackConfig with `overrides` applied and checked."""
    from seqlab.config import FallbackConfig, SafetyConfig, from_dict

    sections = {"safety.": dataclasses.asdict(config.safety),
                "chat.fallback.": dataclasses.asdict(config.chat.fallback)}
    for key, value in overrides.items():
        prefix = next((p for p in sections if key.startswith(p)), None)
        if prefix is None:
            raise SeqlabError(f"a reply policy override must be a safety.* or chat.fallback.* key, "
                              f"got {key!r}")
        sections[prefix][key[len(prefix):]] = value
    return (from_dict(SafetyConfig, sections["safety."], "safety."),
            from_dict(FallbackConfig, sections["chat.fallback."], "chat.fallback."))


def _ban(banned: list[str], offences: list[Offence]) -> list[str]:
    """`banned` and the offences' listed words and their spellings (as folded), each once."""
    more = [w for o in offences for w in (o.word, " ".join(fold_text(o.text).split()))]
    return list(dict.fromkeys([*banned, *more]))


def _clean(tries: int) -> str:
    """The action taken on a reply without listed words, after `tries` generations."""
    return "regenerated" if tries > 1 else "none"


def _collect(pieces: PieceStream) -> Generation:
    text = "".join(pieces)
    return Generation(text, pieces.finish_reason, pieces.confidence)


def _unfiltered(pieces: PieceStream) -> Generator[str, None, Reply]:
    text = []
    for piece in pieces:
        text.append(piece)
        yield piece
    return Reply("".join(text), "none", pieces.finish_reason, pieces.confidence)
