"""Self-BLEU: each hypothesis against all the others, never itself (Texygen issue 46)."""

from __future__ import annotations

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.errors import SeqlabError
from seqlab.eval.self_bleu import self_bleu


def reference_self_bleu(hyps: list[str], tokenize: str = "13a") -> float:
    scores = [sacrebleu.sentence_bleu(h, hyps[:i] + hyps[i + 1:], tokenize=tokenize).score for i, h in enumerate(hyps)]
    return sum(scores) / len(scores)


def test_identical_hypotheses_give_100():
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(100.0)


def test_own_hypothesis_is_not_among_references():
    # with itself as a reference every sentence would score 100; against the other it shares nothing
    assert self_bleu(["a b c d", "e f g h"]) == 0.0
    # a duplicated pair scores 100 each, the odd one out 0
    assert self_bleu(["a b c d", "a b c d", "w x y z"]) == pytest.approx(200 / 3)


def test_hand_example_equals_sacrebleu():
    hyps = ["the cat sat on the mat .", "the cat sat on a hat .", "a dog ran in the park .", "the dog sat ."]
    assert self_bleu(hyps) == pytest.approx(reference_self_bleu(hyps), abs=1e-9)


def test_chinese_characters():
    hyps = ["床前明月光", "床前看月光", "疑是地上霜", "举头望明月"]
    assert self_bleu(hyps, tokenize="zh") == pytest.approx(reference_self_bleu(hyps, "zh"), abs=1e-9)


def test_needs_two_hypotheses():
    with pytest.raises(SeqlabError, match="at least 2 hypotheses, got 1"):
        self_bleu(["only one"])


sentences = st.lists(st.sampled_from(["a", "b", "c", "d", "A", "."]), min_size=0, max_size=8).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(sentences, min_size=2, max_size=6))
def test_equals_leave_one_out_sacrebleu(hyps):
    assert self_bleu(hyps) == pytest.approx(reference_self_bleu(hyps), abs=1e-9)
