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

Pull or push. `stream` and `apply_stream` pull a reply's pieces from generations they start themselves.
A decoder that makes many replies at once (the server's continuous batch) pushes them instead, through
one session per reply, and starts the retries itself:

    session = policy.open(exact_retries=True)
    send(session.feed(piece))            # each piece: what may be sent now ("" while it is held back)
    session.stopped                      # regenerate found a listed word: the generation may end now
    outcome = session.finish(finish_reason, confidence)   # the generation ended (or was stopped)
    send(outcome.text)
    outcome.retry                        # None: outcome.reply is the Reply; else generate again with these
                                         # banned_words (the same seed) and push that generation likewise

The pull API is that loop over the generations it starts, so both give the same pieces and replies.
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
from seqlab.safety.streaming import MaskedText, clean_prefix

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
        session, generation = HeldBack(self, can_retry=retry is not None), first
        while True:
            session.feed(generation.text)
            outcome = session.finish(generation.finish_reason, generation.confidence)
            if outcome.reply is not None:
                return outcome.reply
            assert retry is not None and outcome.retry is not None
            generation = retry(outcome.retry)

    def reply(self, model: Any, tokenizer: Any, prompt: str, **options: Any) -> Reply:
        """The reply to `prompt` (options as `seqlab.decode.stream`'s), through `stream`."""
        return self.stream(model, tokenizer, prompt, **options).finish()

    # ------------------------------------------------------------------ streams

    def open(self, exact_retries: bool = True) -> ReplySession:
        """A session for one reply whose generations are pushed to it (see the module docstring).
        `exact_retries`: a retry repeats the text before the banned word (greedy, or sampling with a seed;
        not beam search)."""
        if not self.active:
            return Unfiltered()
        if self.fallback_threshold is not None or self.action == "refuse" or (
                self.action == "regenerate" and not exact_retries):
            return HeldBack(self)
        if self.action == "mask":
            return Masked(self)
        return Regenerated(self)

    def apply_stream(self, start: Start, exact_retries: bool = True) -> ReplyStream:
        """The reply's pieces from `start(banned_words)`, a new stream per generation; `exact_retries` as in
        `open`."""
        return ReplyStream(_pushed(self.open(exact_retries), start))

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

    def falls_back(self, generation: Generation) -> bool:
        return (self.fallback_threshold is not None and generation.confidence is not None
                and generation.confidence < self.fallback_threshold)


# ---------------------------------------------------------------------- sessions: one reply, pushed


@dataclass
class Outcome:
    """What a session says when a generation ends: the text to send now, then either the reply or a retry."""

    text: str = ""
    reply: Reply | None = None  # the reply, once it is decided
    retry: list[str] | None = None  # else: generate again with these banned_words (and the same seed)


class ReplySession(Protocol):
    """One reply under a policy, its generations pushed piece by piece (`ReplyPolicy.open`)."""

    stopped: bool  # the current generation's text is decided: it may end now (then call finish)

    def feed(self, piece: str) -> str: ...  # the next piece of the current generation -> what may be sent now

    def finish(self, finish_reason: str | None = None, confidence: float | None = None) -> Outcome: ...


class Unfiltered:
    """No filter, no fallback: every piece as it comes."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.stopped = False

    def feed(self, piece: str) -> str:
        self.pieces.append(piece)
        return piece

    def finish(self, finish_reason: str | None = None, confidence: float | None = None) -> Outcome:
        return Outcome(reply=Reply("".join(self.pieces), "none", finish_reason, confidence))


class HeldBack:
    """The whole generation waits for its end (the fallback, refuse, regenerate without exact retries): then
    the fallback, then the filter and its action, as `ReplyPolicy.apply`."""

    def __init__(self, policy: ReplyPolicy, can_retry: bool = True):
        self.policy, self.can_retry = policy, can_retry
        self.pieces: list[str] = []  # the current generation's
        self.stopped = False
        self.banned: list[str] = []
        self.flagged: list[str] = []
        self.tries = 1

    def feed(self, piece: str) -> str:
        self.pieces.append(piece)
        return ""

    def finish(self, finish_reason: str | None = None, confidence: float | None = None) -> Outcome:
        policy, text, self.pieces = self.policy, "".join(self.pieces), []
        if policy.falls_back(Generation(text, finish_reason, confidence)):
            return self._reply(policy.fallback_reply, "fallback", "stop", confidence)
        offences = policy.words.find(text) if policy.words else []
        if not offences:
            return self._reply(text, _clean(self.tries), finish_reason, confidence)
        self.flagged += [o.word for o in offences]
        if policy.action == "mask":
            return self._reply(mask(text, offences), "masked", finish_reason, confidence)
        if policy.action == "refuse" or not self.can_retry or self.tries >= policy.max_tries:
            return self._reply(policy.refusal, "refused", CONTENT_FILTER, confidence)
        self.banned, self.tries = _ban(self.banned, offences), self.tries + 1
        return Outcome(retry=self.banned)

    def _reply(self, text: str, action: str, finish_reason: str | None, confidence: float | None) -> Outcome:
        return Outcome(text, Reply(text, action, finish_reason, confidence, self.flagged, self.tries))


class Masked:
    """Each listed word masked as soon as its verdict is final (seqlab.safety.streaming)."""

    def __init__(self, policy: ReplyPolicy):
        assert policy.words is not None
        self.masked, self.stopped = MaskedText(policy.words), False

    def feed(self, piece: str) -> str:
        return self.masked.feed(piece)

    def finish(self, finish_reason: str | None = None, confidence: float | None = None) -> Outcome:
        rest, scan = self.masked.close(), self.masked.scan
        reply = Reply(mask(scan.text, scan.offences), "masked" if scan.offences else "none", finish_reason,
                      confidence, [o.word for o in scan.offences])
        return Outcome(rest, reply)


class Regenerated:
    """The text before the first listed word is sent as it settles; a generation with a listed word stops
    there and is retried with the word banned, and the retry's repeat of the text sent is skipped."""

    def __init__(self, policy: ReplyPolicy):
        assert policy.words is not None
        self.policy = policy
        self.sent = ""  # the reply's text sent so far
        self.banned: list[str] = []
        self.flagged: list[str] = []
        self.tries = 1
        self.scan = Scan(policy.words)  # the current generation's text
        self.diverged = False  # a retry that did not repeat the text sent
        self.stopped = False

    def feed(self, piece: str) -> str:
        self.scan.feed(piece)
        return self._send(clean_prefix(self.scan))

    def finish(self, finish_reason: str | None = None, confidence: float | None = None) -> Outcome:
        out = ""
        if not self.stopped:  # the generation ran to its end: its last text is settled now
            self.scan.close()
            out = self._send(clean_prefix(self.scan, complete=True))
        scan = self.scan
        if self.diverged:
            return self._refused(out, confidence)
        if not scan.offences:
            if self.sent != scan.text:  # a retry that ended before repeating what was sent
                return self._refused(out, confidence)
            return Outcome(out, Reply(self.sent, _clean(self.tries), finish_reason, confidence, self.flagged,
                                      self.tries))
        self.flagged += [o.word for o in scan.offences]
        if self.tries >= self.policy.max_tries:
            return self._refused(out, confidence)
        self.banned, self.tries = _ban(self.banned, scan.offences), self.tries + 1
        self.scan, self.stopped = Scan(self.policy.words), False
        return Outcome(out, retry=self.banned)

    def _send(self, clean: str) -> str:
        """What of `clean` (the generation's settled text before any listed word) is new; stops the generation
        at a listed word, or where a retry does not repeat the text sent."""
        if not (clean.startswith(self.sent) or self.sent.startswith(clean)):
            self.diverged = self.stopped = True
            return ""
        out = clean[len(self.sent):]
        self.sent += out
        self.stopped = bool(self.scan.offences)
        return out

    def _refused(self, out: str, confidence: float | None) -> Outcome:
        """The refusal, after the text already sent (if any)."""
        refusal = (" " if self.sent and not self.sent[-1].isspace() else "") + self.policy.refusal
        return Outcome(out + refusal, Reply(self.sent + refusal, "refused", CONTENT_FILTER, confidence,
                                            self.flagged, self.tries))


def _pushed(session: ReplySession, start: Start) -> Generator[str, None, Reply]:
    """A reply's pieces, pulled from `start(banned_words)` (one stream per generation) and pushed to `session`."""
    banned: list[str] = []
    while True:
        pieces = start(banned)
        for piece in pieces:
            if out := session.feed(piece):
                yield out
            if session.stopped:
                break
        outcome = session.finish(pieces.finish_reason, pieces.confidence)
        if outcome.text:
            yield outcome.text
        if outcome.reply is not None:
            return outcome.reply
        assert outcome.retry is not None
        banned = outcome.retry


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
