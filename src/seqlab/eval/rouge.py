"""ROUGE-1, ROUGE-2 and ROUGE-L (Lin, 2004) through Google's rouge-score.

For each hypothesis, with n-gram (or longest-common-subsequence) overlap against a reference,

    P = overlap / |hypothesis units|,  R = overlap / |reference units|,  F = 2PR / (P + R)

and the reported value is the mean F over hypotheses (0-1), each taking its best reference
(`RougeScorer.score_multi`: the reference with the highest F, per ROUGE type). No stemming.

rouge-score's default tokenizer lowercases and keeps only [a-z0-9] runs, so it drops every CJK
character. For character-level languages (`zh`, `char`, mecab tokenizers) a `CharacterTokenizer`
goes through its `tokenizer=` argument instead: the BLEU tokens, lowercased, keeping those that
are alphanumeric (so CJK characters stay and punctuation goes, as in the default).
"""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.eval.bleu import check_parallel
from seqlab.eval.tokens import CHARACTER_TOKENIZERS, bleu_tokens

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class CharacterTokenizer:
    """A rouge-score tokenizer that keeps CJK characters (one token each)."""

    def __init__(self, tokenize: str = "zh") -> None:
        self.tokenize_name = tokenize

    def tokenize(self, text: str) -> list[str]:
        return [t.lower() for t in bleu_tokens(text, self.tokenize_name) if t.isalnum()]


def rouge(hyps: Sequence[str], refs: Sequence[Sequence[str]], tokenize: str = "13a") -> dict[str, float]:
    """Mean ROUGE F-measures {rouge1, rouge2, rougeL}; `refs` holds one list per reference set."""
    from rouge_score.rouge_scorer import RougeScorer

    check_parallel(hyps, refs)
    tokenizer = CharacterTokenizer(tokenize) if tokenize in CHARACTER_TOKENIZERS else None
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=tokenizer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for i, hyp in enumerate(hyps):
        targets = [ref_set[i] for ref_set in refs]
        scores = scorer.score_multi(targets, hyp)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    return {key: total / len(hyps) for key, total in totals.items()}
