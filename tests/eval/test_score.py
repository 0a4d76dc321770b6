"""score_texts: every key equals what sacrebleu and rouge-score give on the same inputs."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from seqlab.errors import SeqlabError
from seqlab.eval.generation import evaluate_generations
from seqlab.eval.score import SCORE_KEYS, score_texts

HYPS = ["the cat sat on the mat .", "a dog barked at the mailman", "it is raining today"]
REFS = [["the cat is on the mat .", "the dog barked at the postman", "is it raining ?"],
        ["a cat sat on a mat .", "a dog was barking", "it rains today"]]


def test_english_values_equal_the_reference_libraries():
    scores = score_texts(HYPS, REFS)
    assert tuple(scores) == SCORE_KEYS
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, REFS).score, abs=1e-12)
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    multi = [scorer.score_multi([r1, r2], h) for h, r1, r2 in zip(HYPS, *REFS, strict=True)]
    for key in ("rouge1", "rouge2", "rougeL"):
        assert scores[key] == pytest.approx(sum(m[key].fmeasure for m in multi) / 3, abs=1e-12)
    self_bleu = [sacrebleu.sentence_bleu(h, HYPS[:i] + HYPS[i + 1:]).score for i, h in enumerate(HYPS)]
    assert scores["self_bleu"] == pytest.approx(sum(self_bleu) / 3, abs=1e-9)
    assert scores["avg_len"] == pytest.approx((7 + 6 + 4) / 3)
    assert scores["distinct1"] == pytest.approx(15 / 17)  # 17 tokens, "the" three times
    assert scores["distinct2"] == pytest.approx(1.0)


def test_chinese_uses_characters_everywhere():
    hyps, refs = ["床前明月光", "疑是地上霜"], [["床前看月光", "疑是地上霜"]]
    scores = score_texts(hyps, refs, lang="zh")
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs, tokenize="zh").score, abs=1e-12)
    assert scores["avg_len"] == 5.0 and scores["distinct1"] == 1.0
    assert scores["rouge1"] == pytest.approx((0.8 + 1.0) / 2)
    assert score_texts(hyps, refs, lang="en", tokenize="char") == pytest.approx(scores)


def test_one_hypothesis_has_no_self_bleu():
    assert score_texts(["a b"], [["a b"]])["self_bleu"] is None


def test_bad_inputs():
    with pytest.raises(SeqlabError, match="no hypotheses"):
        score_texts([], [[]])
    with pytest.raises(SeqlabError, match="reference set 2 has 2 lines but there are 3 hypotheses"):
        score_texts(HYPS, [REFS[0], REFS[1][:2]])
    with pytest.raises(SeqlabError, match="unknown tokenizer"):
        score_texts(HYPS, REFS, tokenize="13b")


def test_evaluate_generations_adds_the_example_count():
    result = evaluate_generations(HYPS, REFS[0])
    assert result == {**score_texts(HYPS, REFS[:1]), "examples": 3}
