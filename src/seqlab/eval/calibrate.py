"""Calibrating the chat's fallback: the confidence below which a reply is replaced by "I don't know".

The model answers held-out (question, reference) pairs as the chat would (`reply_to_pairs`); each reply
gets its confidence c_i (`seqlab.decode`: the mean log-probability of its tokens, or the beam score) and
whether it is right:

    right_i  =  norm(reply_i) == norm(reference_i)   or   ROUGE-L F(reply_i, reference_i) >= 0.8

(norm: lowercased, whitespace collapsed; ROUGE-L on the tokens seqlab's ROUGE uses, one per character
for Chinese). A threshold X answers the replies with c_i >= X and gives the fallback to the others:

    coverage(X) = |{i : c_i >= X}| / n          accuracy(X) = |{i : c_i >= X, right_i}| / |{i : c_i >= X}|

The candidates are "off" (no fallback, coverage 1) and, for each distinct confidence but the lowest
(which answers everything, like "off"), a threshold just at it. `choose` picks the candidate with the
highest accuracy among those with coverage >= the target; ties go to the higher coverage.

    replies = reply_to_pairs(session, pairs)          # a ChatSession: the chat's model, prompt and options
    result = calibrate([r.confidence for r in replies], [r.right for r in replies], coverage=0.8)
    result.chosen.threshold                           # X for chat.fallback.threshold (None: leave it off)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from seqlab.errors import SeqlabError

RIGHT_ROUGE_L = 0.8  # a reply at least this close to the reference (ROUGE-L F) counts as right
TABLE_COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


@dataclass(frozen=True)
class ScoredReply:
    """One held-out question, the model's reply to it, and how it scored."""

    question: str
    reference: str
    text: str
    confidence: float
    right: bool


@dataclass(frozen=True)
class Cut:
    """What a threshold does to the held-out replies: it answers those with confidence >= `threshold`."""

    threshold: float | None  # None: off, every reply answered
    answered: int
    right: int  # right replies among the answered
    total: int

    @property
    def coverage(self) -> float:
        return self.answered / self.total

    @property
    def accuracy(self) -> float:
        """Accuracy on the answered replies (0 when none is)."""
        return self.right / self.answered if self.answered else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "answered": self.answered, "right": self.right, "total": self.total,
                "coverage": round(self.coverage, 6), "accuracy": round(self.accuracy, 6)}


@dataclass(frozen=True)
class Calibration:
    cuts: list[Cut]  # "off" first, then ever higher thresholds (ever lower coverage)
    chosen: Cut
    target_coverage: float

    @property
    def off(self) -> Cut:
        return self.cuts[0]

    def table(self, coverages: Sequence[float] = TABLE_COVERAGES) -> list[Cut]:
        """The cut `choose` gives at each target coverage, and the chosen one: distinct, by falling coverage."""
        rows = {choose(self.cuts, c) for c in coverages if c > 0} | {self.chosen}
        return sorted(rows, key=lambda cut: (-cut.answered, cut.threshold is not None))

    def to_dict(self) -> dict[str, Any]:
        return {"target_coverage": self.target_coverage, "threshold": self.chosen.threshold,
                "chosen": self.chosen.to_dict(), "no_fallback": self.off.to_dict(),
                "table": [c.to_dict() for c in self.table()], "cuts": [c.to_dict() for c in self.cuts]}


def check_coverage(coverage: float) -> float:
    if not isinstance(coverage, (int, float)) or isinstance(coverage, bool) or not 0.0 < coverage <= 1.0:
        raise SeqlabError(f"the target coverage must be in (0, 1] (the share of questions answered), got {coverage!r}")
    return float(coverage)


def cuts(confidences: Sequence[float], rights: Sequence[bool]) -> list[Cut]:
    """Every candidate threshold's cut: "off", then one per distinct confidence above the lowest (see the
    module docstring). A threshold is the shortest decimal that answers exactly the replies at or above
    its confidence, so that written into a config it reproduces the cut."""
    if len(confidences) != len(rights):
        raise ValueError(f"{len(confidences)} confidences but {len(rights)} right/wrong flags")
    if not confidences:
        raise SeqlabError("no replies to calibrate on")
    if any(math.isnan(c) for c in confidences):
        raise SeqlabError("a reply's confidence is NaN: the model's scores are not finite")
    total = len(confidences)
    ranked = sorted(zip(confidences, rights, strict=True), key=lambda pair: -pair[0])
    result = [Cut(None, total, sum(bool(r) for r in rights), total)]
    answered = right = 0
    for i, (confidence, is_right) in enumerate(ranked[:-1]):
        answered, right = answered + 1, right + bool(is_right)
        below = ranked[i + 1][0]
        if below < confidence:  # the last reply at this confidence: a threshold in (below, confidence]
            result.append(Cut(shortest_between(below, confidence), answered, right, total))
    return [result[0], *reversed(result[1:])]


def shortest_between(low: float, high: float) -> float:
    """The decimal with the fewest digits after the point in (low, high]: a threshold that reads well."""
    if math.isinf(high):
        return high
    for digits in range(18):
        scale = 10.0 ** digits
        value = math.floor(high * scale) / scale
        if low < value <= high:
            return value
    return high


def threshold_text(threshold: float | None) -> str:
    """A threshold as a config value: its shortest decimal, never in exponent form (YAML reads 1e-05 as a
    string); "null" for off."""
    if threshold is None:
        return "null"
    return format(Decimal(repr(threshold)), "f")


def choose(candidates: Sequence[Cut], coverage: float) -> Cut:
    """The cut with the highest accuracy among those covering >= `coverage`; ties: the higher coverage."""
    check_coverage(coverage)
    eligible = [c for c in candidates if c.coverage >= coverage]
    return max(eligible, key=lambda c: (Fraction(c.right, c.answered) if c.answered else Fraction(0), c.answered))


def calibrate(confidences: Sequence[float], rights: Sequence[bool], coverage: float = 0.8) -> Calibration:
    """The candidate cuts and the one chosen for the target `coverage` (see the module docstring)."""
    check_coverage(coverage)
    candidates = cuts(confidences, rights)
    return Calibration(candidates, choose(candidates, coverage), float(coverage))


def answers(threshold: float | None, confidence: float) -> bool:
    """Whether a reply of this confidence is given (True) or replaced by the fallback: the chat's rule."""
    return threshold is None or confidence >= threshold


# ---------------------------------------------------------------------------------------------- replies


class RightAnswer:
    """Whether a reply is right against its reference: exact match after normalisation, or ROUGE-L F >= 0.8."""

    def __init__(self, tokenize: str = "13a", min_rouge_l: float = RIGHT_ROUGE_L):
        from rouge_score.rouge_scorer import RougeScorer

        from seqlab.eval.rouge import CharacterTokenizer
        from seqlab.eval.tokens import CHARACTER_TOKENIZERS

        tokenizer = CharacterTokenizer(tokenize) if tokenize in CHARACTER_TOKENIZERS else None
        self.scorer = RougeScorer(["rougeL"], use_stemmer=False, tokenizer=tokenizer)
        self.min_rouge_l = min_rouge_l

    def __call__(self, reply: str, reference: str) -> bool:
        if normalise(reply) == normalise(reference):
            return True
        return self.scorer.score(reference, reply)["rougeL"].fmeasure >= self.min_rouge_l


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def reply_to_pairs(session: Any, pairs: Sequence[tuple[str, str]], *, tokenize: str = "13a", batch_size: int = 32,
                   seed: int | None = None) -> list[ScoredReply]:
    """The chat's reply to each question, with its confidence and whether it matches the reference.

    `session` is a `seqlab.chat.ChatSession`: its model, tokenizer and options, and its `prompt` (the last
    `history_turns` turns, as the chat builds it; a question holding earlier turns joined by " <sep> ", as
    in dialogue pairs, is read as that history). Replies are generated in left-padded batches of
    `batch_size`; a language model's reply is its text up to the first line break, as in the chat."""
    from seqlab.decode import build_prompt_ids, generate, left_pad
    from seqlab.decode.stopping import cut_at_stop

    if batch_size < 1:
        raise SeqlabError(f"the batch size must be >= 1, got {batch_size}")
    tokenizer, model = session.tokenizer, session.model
    options = dataclasses.asdict(session.options) | {"num_return_sequences": 1}
    if seed is not None:
        options["seed"] = seed
    if not model.is_encoder_decoder:  # the chat's rule: a language model's reply ends at the line break
        options["stop_strings"] = [*session.options.stop_list, "\n"]
    stops = options.get("stop_strings") or []
    is_right = RightAnswer(tokenize)
    replies = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        prompts = [build_prompt_ids(tokenizer, _prompt(session, question)) for question, _ in batch]
        input_ids, attention_mask = left_pad(prompts, tokenizer.pad_id)
        out = generate(model, input_ids, attention_mask, tokenizer=tokenizer, **options)
        first = 1 if model.is_encoder_decoder else input_ids.shape[1]
        for i, (question, reference) in enumerate(batch):
            tokens = out.sequences[i, first:first + int(out.lengths[i])].tolist()
            text, _ = cut_at_stop(tokenizer.decode(tokens), stops)
            text = " ".join((text if model.is_encoder_decoder else text.split("\n")[0]).split())
            replies.append(ScoredReply(question, reference, text, out.confidence[i], is_right(text, reference)))
    return replies


def _prompt(session: Any, question: str) -> str:
    """The chat's prompt for `question`, its earlier turns (joined by " <sep> ") taken as the history."""
    from seqlab.data.corpora.dialogue import SEPARATOR

    turns = [" ".join(t.split()) for t in question.split(SEPARATOR)]
    saved, session.turns = session.turns, turns[:-1]
    try:
        return session.prompt(turns[-1])
    finally:
        session.turns = saved


def read_pairs(data: str, encoding: str = "utf-8", history_turns: int = 1) -> list[tuple[str, str]]:
    """(question, reference) pairs from a pairs corpus: a .tsv question<TAB>answer, a JSONL of
    {"source", "target"} or {"messages"} rows, or a built-in dialogue corpus (`seqlab.data.corpora`)."""
    from seqlab.data.corpora import load_corpus

    corpus = load_corpus(data, encoding=encoding, history_turns=history_turns)
    if corpus.kind != "pairs":
        raise SeqlabError(f"{data}: holds {corpus.kind} data; calibrating needs held-out (question, answer) pairs: "
                          'a .tsv of question<TAB>answer lines, or a JSONL of {"source", "target"} or '
                          '{"messages"} rows')
    if not corpus.examples:
        raise SeqlabError(f"{data}: no (question, answer) pairs")
    return [(p.source, p.target) for p in corpus.examples]


def plot_calibration(result: Calibration, path: str | os.PathLike) -> Path:
    """Accuracy on the answered questions vs coverage, one point per candidate threshold, the chosen one
    marked and the target coverage a dashed line."""
    from seqlab.eval.plots import plot_learning_curves

    curve = sorted((c.coverage, c.accuracy) for c in result.cuts)
    chosen = result.chosen
    label = "off" if chosen.threshold is None else threshold_text(chosen.threshold)
    return plot_learning_curves({"accuracy on answered": curve, f"chosen (threshold {label})":
                                 [(chosen.coverage, chosen.accuracy)]}, path, vline=result.target_coverage,
                                xlabel="coverage (share of questions answered)", ylabel="accuracy on answered",
                                title="fallback calibration", vline_label="target coverage")
