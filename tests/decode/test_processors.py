"""Logits processors: hand-made logits, no mutation of inputs, and agreement with HF's own classes."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation import logits_process as hf

from seqlab.decode.processors import (
    BadWords,
    ForcedEOS,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    ProcessorList,
    RepetitionPenalty,
    SuppressTokens,
    Temperature,
    TopK,
    TopP,
)

INF = math.inf


def run_unmutated(processor, input_ids, scores):
    """Apply `processor`, checking it leaves both inputs untouched."""
    ids_before, scores_before = input_ids.clone(), scores.clone()
    out = processor(input_ids, scores)
    assert torch.equal(input_ids, ids_before)
    assert torch.equal(scores, scores_before)
    return out


IDS = torch.tensor([[0, 1, 2, 1]])


def test_temperature_by_hand():
    out = run_unmutated(Temperature(0.5), IDS, torch.tensor([[1.0, -2.0, 0.0]]))
    assert out.tolist() == [[2.0, -4.0, 0.0]]


def test_top_k_by_hand_keeps_ties():
    out = run_unmutated(TopK(2), IDS, torch.tensor([[1.0, 3.0, 1.0, 0.5], [4.0, 3.0, 2.0, 1.0]]))
    assert out.tolist() == [[1.0, 3.0, 1.0, -INF], [4.0, 3.0, -INF, -INF]]


def test_top_p_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = run_unmutated(TopP(0.8), IDS, probs.log())
    # cumulative from the least likely: 0.05, 0.20, 0.50, 1.0 -> drop those <= 0.2 (mass outside p)
    assert torch.isinf(out[0, 2:]).all() and torch.isfinite(out[0, :2]).all()
    assert torch.isfinite(run_unmutated(TopP(1.0), IDS, probs.log())).all()


def test_min_p_by_hand():
    probs = torch.tensor([[0.6, 0.25, 0.1, 0.05]])
    out = run_unmutated(MinP(0.2), IDS, probs.log())  # threshold 0.12
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()


def test_repetition_penalty_by_hand():
    out = run_unmutated(RepetitionPenalty(2.0), IDS, torch.tensor([[2.0, -1.0, 4.0, 3.0]]))
    assert out.tolist() == [[1.0, -2.0, 2.0, 3.0]]


def test_repetition_penalty_skips_left_padding():
    ids = torch.tensor([[3, 3, 1], [0, 2, 1]])  # row 0: two pad tokens (id 3) on the left
    out = run_unmutated(RepetitionPenalty(2.0, ignore_prefix=torch.tensor([2, 0])), ids, torch.full((2, 4), 4.0))
    assert out.tolist() == [[4.0, 2.0, 4.0, 4.0], [2.0, 2.0, 2.0, 4.0]]


def test_no_repeat_ngram_by_hand():
    ids = torch.tensor([[1, 2, 3, 1, 2], [1, 1, 1, 1, 1]])
    out = run_unmutated(NoRepeatNGram(3), ids, torch.zeros(2, 5))
    # row 0: suffix (1, 2) was followed by 3; row 1: suffix (1, 1) was followed by 1
    assert torch.isinf(out).nonzero().tolist() == [[0, 3], [1, 1]]
    assert torch.equal(run_unmutated(NoRepeatNGram(6), ids, torch.zeros(2, 5)), torch.zeros(2, 5))


def test_min_new_tokens_by_hand():
    proc = MinNewTokens(prompt_length=3, min_new_tokens=2, eos_token_ids=[0])
    scores = torch.ones(1, 3)
    assert run_unmutated(proc, torch.tensor([[5, 5, 5, 1]]), scores).tolist() == [[-INF, 1.0, 1.0]]
    assert run_unmutated(proc, torch.tensor([[5, 5, 5, 1, 1]]), scores).tolist() == [[1.0, 1.0, 1.0]]


def test_bad_words_by_hand():
    proc = BadWords([[2], [0, 1], [1, 1, 3], [4]], eos_token_ids=[4])  # [4] == EOS alone: ignored
    ids = torch.tensor([[3, 0], [1, 1], [2, 2]])
    out = run_unmutated(proc, ids, torch.zeros(3, 5))
    assert torch.isinf(out).nonzero().tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 2]]


def test_forced_eos_by_hand():
    proc = ForcedEOS(max_length=4, eos_token_ids=[1])
    scores = torch.tensor([[5.0, 1.0, 2.0]])
    assert run_unmutated(proc, torch.tensor([[0, 0, 0]]), scores).tolist() == [[-INF, 0.0, -INF]]
    assert torch.equal(run_unmutated(proc, torch.tensor([[0, 0]]), scores), scores)


def test_suppress_tokens_by_hand():
    proc = SuppressTokens([3, 1, 3])
    out = run_unmutated(proc, torch.tensor([[0], [2]]), torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
    assert out.tolist() == [[1.0, -INF, 3.0, -INF], [0.0, -INF, 0.0, -INF]]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        SuppressTokens([7])(IDS, torch.zeros(1, 4))


def test_processor_list_chains_in_order():
    chain = ProcessorList([Temperature(2.0), TopK(1)])
    out = run_unmutated(chain, IDS, torch.tensor([[2.0, 4.0]]))
    assert out.tolist() == [[-INF, 2.0]]
    assert torch.equal(ProcessorList()(IDS, torch.ones(1, 2)), torch.ones(1, 2))


@pytest.mark.parametrize("bad_args", [
    lambda: Temperature(0.0), lambda: TopK(0), lambda: TopP(0.0), lambda: TopP(1.5), lambda: MinP(-0.1),
    lambda: RepetitionPenalty(0.0), lambda: NoRepeatNGram(0), lambda: BadWords([]), lambda: BadWords([[-1]]),
])
def test_invalid_arguments(bad_args):
    with pytest.raises(ValueError):
        bad_args()


# --------------------------------------------------------------------------- against HF on random inputs


def random_case(seed: int, N: int = 6, L: int = 12, V: int = 9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (N, L), generator=g)  # small V: plenty of repeats and n-gram matches
    scores = torch.randn(N, V, generator=g) * 3
    return ids, scores


PAIRS = [
    (lambda: Temperature(0.7), lambda: hf.TemperatureLogitsWarper(0.7)),
    (lambda: TopK(3), lambda: hf.TopKLogitsWarper(3)),
    (lambda: TopK(3, min_tokens_to_keep=5), lambda: hf.TopKLogitsWarper(3, min_tokens_to_keep=5)),
    (lambda: TopP(0.6), lambda: hf.TopPLogitsWarper(0.6)),
    (lambda: TopP(0.3, min_tokens_to_keep=2), lambda: hf.TopPLogitsWarper(0.3, min_tokens_to_keep=2)),
    (lambda: MinP(0.1), lambda: hf.MinPLogitsWarper(0.1)),
    (lambda: MinP(0.9, min_tokens_to_keep=3), lambda: hf.MinPLogitsWarper(0.9, min_tokens_to_keep=3)),
    (lambda: RepetitionPenalty(1.3), lambda: hf.RepetitionPenaltyLogitsProcessor(1.3)),
    (lambda: RepetitionPenalty(1.3, ignore_prefix=torch.tensor([0, 2, 5, 0, 1, 11])),
     lambda: hf.RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=torch.tensor([0, 2, 5, 0, 1, 11]))),
    (lambda: NoRepeatNGram(2), lambda: hf.NoRepeatNGramLogitsProcessor(2)),
    (lambda: NoRepeatNGram(3), lambda: hf.NoRepeatNGramLogitsProcessor(3)),
    (lambda: MinNewTokens(10, 3, [1, 4]), lambda: hf.MinNewTokensLengthLogitsProcessor(10, 3, [1, 4])),
    (lambda: BadWords([[3], [1, 2], [2, 2, 5], [7, 0], [4]], [4]),
     lambda: hf.NoBadWordsLogitsProcessor([[3], [1, 2], [2, 2, 5], [7, 0], [4]], [4])),
    (lambda: ForcedEOS(13, [2]), lambda: hf.ForcedEOSTokenLogitsProcessor(13, [2])),
    (lambda: SuppressTokens([0, 5, 8]), lambda: hf.SuppressTokensLogitsProcessor([0, 5, 8])),
]


@pytest.mark.parametrize("ours, theirs", PAIRS)
@pytest.mark.parametrize("seed", range(4))
def test_matches_hf(ours, theirs, seed):
    ids, scores = random_case(seed)
    expected = theirs()(ids, scores.clone())
    torch.testing.assert_close(run_unmutated(ours(), ids, scores), expected, atol=0, rtol=0)
