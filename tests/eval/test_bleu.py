"""BLEU: corpus BLEU equals sacrebleu's; pooled BLEU equals sacrebleu.sentence_bleu and NLTK (Texygen)."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU

from seqlab.errors import SeqlabError
from seqlab.eval.bleu import ReferencePool, corpus_bleu, ngram_counts, pooled_bleu

HYPS = ["The cat sat on the mat.", "A dog barked at the mailman!", "It is raining, isn't it?"]
REFS = [
    ["The cat is sitting on the mat.", "The dog barked at the postman.", "It's raining, isn't it?"],
    ["A cat sat on the mat.", "A dog was barking at the mailman.", "Is it raining?"],
]
ZH_HYPS = ["床前明月光，疑是地上霜。", "白日依山尽", "春眠不觉晓，处处闻啼鸟"]
ZH_REFS = [["床前看月光，疑是地上霜。", "白日依山尽，黄河入海流", "春眠不觉晓，处处闻啼鸟。"]]


def test_corpus_bleu_equals_sacrebleu_multi_reference():
    assert corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, REFS).score, abs=1e-12)
    assert corpus_bleu(HYPS, REFS[:1]) != corpus_bleu(HYPS, REFS)  # the second reference set counts


def test_corpus_bleu_chinese_uses_zh_tokenizer():
    ours = corpus_bleu(ZH_HYPS, ZH_REFS, tokenize="zh")
    assert ours == pytest.approx(sacrebleu.corpus_bleu(ZH_HYPS, ZH_REFS, tokenize="zh").score, abs=1e-12)
    # without it, a whole line without spaces is one 13a token and the score collapses
    assert sacrebleu.corpus_bleu(ZH_HYPS, ZH_REFS).score < ours


def test_bleu_n_is_uniform_weights_by_hand():
    # p1 = 3/4 (a b c), p2 = 2/3 (a b, b c), BP = 1  ->  BLEU-2 = 100 * sqrt(3/4 * 2/3)
    assert corpus_bleu(["a b c d"], [["a b c e"]], max_ngram_order=2) == pytest.approx(100 * math.sqrt(0.5))
    # p3 = 1/2 (a b c)  ->  BLEU-3 = 100 * (3/4 * 2/3 * 1/2) ** (1/3)
    assert corpus_bleu(["a b c d"], [["a b c e"]], max_ngram_order=3) == pytest.approx(100 * 0.25 ** (1 / 3))


def test_pooled_bleu_equals_mean_sacrebleu_sentence_bleu():
    pool = [r for ref_set in REFS for r in ref_set]
    expected = sum(sacrebleu.sentence_bleu(h, pool).score for h in HYPS) / len(HYPS)
    assert pooled_bleu(HYPS, pool) == pytest.approx(expected, abs=1e-9)
    bleu3 = BLEU(max_ngram_order=3, effective_order=True, smooth_method="floor", smooth_value=0.1)
    expected3 = sum(bleu3.sentence_score(h, pool).score for h in HYPS) / len(HYPS)
    assert pooled_bleu(HYPS, pool, 3, smooth_method="floor", smooth_value=0.1) == pytest.approx(expected3, abs=1e-9)


def test_pooled_bleu_chinese():
    pool = ZH_REFS[0] + ["举头望明月，低头思故乡。"]
    expected = sum(sacrebleu.sentence_bleu(h, pool, tokenize="zh").score for h in ZH_HYPS) / len(ZH_HYPS)
    assert pooled_bleu(ZH_HYPS, pool, tokenize="zh") == pytest.approx(expected, abs=1e-9)


def test_floor_smoothing_reproduces_texygen_nltk_bleu():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    refs = ["the cat sat on the mat", "a dog sat on a log", "the bird flew over the mat", "cats and dogs"]
    hyps = ["the dog sat on the mat", "a bird flew over a log", "the cat and the dog"]
    for n in (2, 3, 4, 5):
        texygen = sum(sentence_bleu([r.split() for r in refs], h.split(), weights=(1 / n,) * n,
                                    smoothing_function=SmoothingFunction().method1) for h in hyps) / len(hyps)
        ours = pooled_bleu(hyps, refs, n, smooth_method="floor", smooth_value=0.1)
        assert ours == pytest.approx(100 * texygen, abs=1e-9)


def test_reference_pool_works_on_token_ids():
    words = [r.split() for r in ["a b c a", "b c d", "a a b"]]
    vocab = {w: i for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    by_ids = ReferencePool([[vocab[w] for w in ws] for ws in words], 3)
    by_words = ReferencePool(words, 3)
    hyp = "a b c d".split()
    assert by_ids.sentence_bleu([vocab[w] for w in hyp]) == by_words.sentence_bleu(hyp)
    expected = sacrebleu.sentence_bleu("a b c d", ["a b c a", "b c d", "a a b"], tokenize="none").score
    assert ReferencePool(words, 4).sentence_bleu(hyp) == pytest.approx(expected)


def test_reference_pool_clip_and_closest_length_leave_one_out():
    pool = ReferencePool([["x", "x", "y"], ["x", "z"], ["x", "x", "x", "y", "y"]], 2)
    assert pool.clip(("x",)) == 3 and pool.clip(("x",), exclude=2) == 2 and pool.clip(("x",), exclude=0) == 3
    assert pool.clip(("y",), exclude=2) == 1 and pool.clip(("q",)) == 0
    assert pool.closest_length(4) == 3  # 3 and 5 tie: the shorter wins
    assert pool.closest_length(4, exclude=0) == 5 and pool.closest_length(3, exclude=0) == 2


def test_ngram_counts_by_hand():
    assert ngram_counts(["a", "b", "a"], 2) == {("a",): 2, ("b",): 1, ("a", "b"): 1, ("b", "a"): 1}


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(SeqlabError, match="reference set 1 has 2 lines but there are 3 hypotheses"):
        corpus_bleu(HYPS, [REFS[0][:2]])
    with pytest.raises(SeqlabError, match="no hypotheses"):
        corpus_bleu([], [[]])
    with pytest.raises(SeqlabError, match="unknown tokenizer 'spm'"):
        corpus_bleu(HYPS, REFS, tokenize="spm")
    with pytest.raises(SeqlabError, match="at least one reference"):
        pooled_bleu(HYPS, [])


def test_tokenized_looking_output_scores_the_same_without_warnings(caplog):
    hyps, refs = ["a b c ."] * 120, [["a b d ."] * 120]
    expected = sacrebleu.corpus_bleu(hyps, refs).score
    assert "tokenized period" in caplog.text  # sacrebleu warns
    caplog.clear()
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)
    assert "tokenized period" not in caplog.text


sentences = st.lists(st.sampled_from(["a", "b", "c", "B", "!"]), max_size=7).map(" ".join)


@settings(max_examples=50, deadline=None)
@given(st.lists(sentences, min_size=1, max_size=4), st.lists(sentences, min_size=1, max_size=5), st.integers(1, 4))
def test_pooled_bleu_equals_sacrebleu_on_random_sets(hyps, pool, n):
    bleu = BLEU(max_ngram_order=n, effective_order=True)
    expected = sum(bleu.sentence_score(h, pool).score for h in hyps) / len(hyps)
    assert pooled_bleu(hyps, pool, n) == pytest.approx(expected, abs=1e-9)
