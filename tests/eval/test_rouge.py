"""ROUGE: equals rouge-score's RougeScorer (no stemmer), best over references, CJK kept for zh."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score.rouge_scorer import RougeScorer

from seqlab.errors import SeqlabError
from seqlab.eval.rouge import ROUGE_TYPES, CharacterTokenizer, rouge

HYPS = ["The cats sat on the mat.", "A dog barked at the mailman!", "It is raining today"]
REFS = [
    ["The cat is sitting on the mat.", "The dog barked at the postman.", "It's raining, isn't it?"],
    ["A cat sat on the mat.", "A dog was barking at the mailman.", "Is it raining today?"],
]


def mean_f(scores: list[dict]) -> dict[str, float]:
    return {k: sum(s[k].fmeasure for s in scores) / len(scores) for k in ROUGE_TYPES}


def test_single_reference_equals_rouge_score():
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    expected = mean_f([scorer.score(r, h) for h, r in zip(HYPS, REFS[0], strict=True)])
    assert rouge(HYPS, REFS[:1]) == pytest.approx(expected, abs=1e-12)


def test_multi_reference_takes_the_best_like_score_multi():
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    expected = mean_f([scorer.score_multi([r1, r2], h) for h, r1, r2 in zip(HYPS, *REFS, strict=True)])
    ours = rouge(HYPS, REFS)
    assert ours == pytest.approx(expected, abs=1e-12)
    assert all(ours[k] > rouge(HYPS, REFS[:1])[k] for k in ROUGE_TYPES)
    assert rouge(["a cat sat on the mat"], [["x y z"], ["A cat sat on the mat."]])["rougeL"] == 1.0


class Characters:
    """An independent character tokenizer: alphanumeric characters, lowercased."""

    def tokenize(self, text: str) -> list[str]:
        return [c.lower() for c in text if c.isalnum()]


def test_chinese_counts_characters():
    hyps = ["床前明月光，疑是地上霜。", "白日依山尽"]
    refs = [["床前看月光，疑是地上霜。", "白日依山尽，黄河入海流"]]
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=Characters())
    expected = mean_f([scorer.score(r, h) for h, r in zip(hyps, refs[0], strict=True)])
    assert rouge(hyps, refs, tokenize="zh") == pytest.approx(expected, abs=1e-12)
    assert rouge(hyps, refs, tokenize="char") == pytest.approx(expected, abs=1e-12)
    # rouge-score's default tokenizer drops every CJK character: everything scores 0
    assert rouge(hyps, refs, tokenize="13a") == dict.fromkeys(ROUGE_TYPES, 0.0)


def test_character_tokenizer_keeps_cjk_and_latin_words():
    assert CharacterTokenizer("zh").tokenize("我爱 Python，OK!") == ["我", "爱", "python", "ok"]


def test_bad_inputs():
    with pytest.raises(SeqlabError, match="no hypotheses"):
        rouge([], [[]])
    with pytest.raises(SeqlabError, match="reference set 2 has 1 lines but there are 3 hypotheses"):
        rouge(HYPS, [REFS[0], REFS[1][:1]])


# at least two words: a one-word text has no bigram, so its rouge2 is 0 even against itself
words = st.lists(st.sampled_from(["cat", "dog", "Mat", "sat", "on"]), min_size=2, max_size=8).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(words, min_size=1, max_size=4), st.lists(words, min_size=4, max_size=4))
def test_range_and_identity(hyps, others):
    scores = rouge(hyps, [others[:len(hyps)]])
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert rouge(hyps, [others[:len(hyps)], hyps]) == pytest.approx(dict.fromkeys(ROUGE_TYPES, 1.0))
