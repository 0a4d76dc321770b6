"""Distinct-n on hand-counted examples, on BLEU's tokens, case-sensitive, within hypotheses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqlab.eval.distinct import distinct_n
from seqlab.eval.tokens import bleu_tokens


def test_hand_counted_english():
    # 13a tokens: [the, cat, the, cat, .] [The, cat, sat]
    tokens = [bleu_tokens(h) for h in ["the cat the cat.", "The cat sat"]]
    assert tokens == [["the", "cat", "the", "cat", "."], ["The", "cat", "sat"]]
    # unigrams: 8 in all; unique: the, cat, ., The, sat (case-sensitive) = 5
    assert distinct_n(tokens, 1) == pytest.approx(5 / 8)
    # bigrams: (the cat) (cat the) (the cat) (cat .) | (The cat) (cat sat): 6 in all, 5 unique
    assert distinct_n(tokens, 2) == pytest.approx(5 / 6)


def test_hand_counted_chinese_characters():
    tokens = [bleu_tokens(h, "zh") for h in ["白日白日", "日白"]]
    assert distinct_n(tokens, 1) == pytest.approx(2 / 6)
    assert distinct_n(tokens, 2) == pytest.approx(2 / 4)  # 白日 日白 白日 | 日白


def test_ngrams_do_not_cross_hypotheses():
    assert distinct_n([["a", "b"], ["c", "d"]], 2) == 1.0  # (b c) would make it 3 bigrams
    assert distinct_n([["a"], ["a"]], 2) == 0.0  # no bigram at all


@given(st.lists(st.lists(st.sampled_from("abcd"), max_size=6), min_size=1, max_size=5), st.integers(1, 3))
def test_between_zero_and_one_and_one_when_all_unique(token_lists, n):
    value = distinct_n(token_lists, n)
    assert 0.0 <= value <= 1.0
    grams = [tuple(t[i:i + n]) for t in token_lists for i in range(len(t) - n + 1)]
    assert (value == 1.0) == (len(grams) > 0 and len(set(grams)) == len(grams))
