"""Distinct-n (Li et al., 2016): the share of n-grams in the generated texts that are unique.

    distinct_n = |{n-grams of all hypotheses}| / (number of n-grams of all hypotheses)

n-grams are taken within each hypothesis (never across two), on the tokens BLEU counts
(`seqlab.eval.tokens.bleu_tokens`: 13a words, characters for zh), case-sensitive. With no
n-gram at all (every hypothesis shorter than n) it is 0.
"""

from __future__ import annotations

from collections.abc import Sequence


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Unique / total n-grams over all token lists."""
    grams = [tuple(toks[i:i + n]) for toks in token_lists for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
