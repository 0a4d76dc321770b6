"""Greedy / sampling loop (seqlab.decode.search): the token choice a CUDA graph records with the step.

On a GPU, `CapturedStep.advance` records the model's step and `Choice` in one graph per processor plan and
replays it: the Python in between does not run again, so the choice must not depend on host values that
change from step to step, and must never wait for the device. Here the real CapturedStep runs on the
CPU with graphs recorded and replayed by `graph_emulator` (same semantics, see there), on a capturable
model (`decode_fakes.StaticRNN`).
"""

from __future__ import annotations

import pytest
import torch
from decode_fakes import StaticRNN
from graph_emulator import generate_both

from seqlab.decode.processors import (
    BadWords,
    ForcedEOS,
    MinNewTokens,
    ProcessorList,
    RepetitionPenalty,
    TopK,
    TopP,
)
from seqlab.decode.search import Choice, exponential_, race

VOCAB, EOS, PAD = 13, 2, 1


@pytest.fixture(scope="module")
def model():
    return StaticRNN(VOCAB, max_length=40)


@pytest.mark.parametrize("options", [
    dict(do_sample=True, top_k=5, top_p=0.9, min_new_tokens=20, eos_token_id=EOS, seed=0),  # bench/decode.py's
    dict(do_sample=True, temperature=0.7, min_p=0.05, min_new_tokens=6, eos_token_id=EOS, seed=1),  # two plans
    dict(eos_token_id=EOS, pad_token_id=PAD),  # greedy, rows finish at EOS and are filled
    dict(eos_token_id=EOS, forced_eos_token_id=EOS, pad_token_id=PAD),  # a plan for the last step only
    dict(do_sample=True, bad_words_ids=[[3], [4]], suppress_tokens=[5], seed=2, eos_token_id=EOS),
])
@pytest.mark.parametrize("sync_every", [1, 16])
def test_the_recorded_choice_gives_the_loops_tokens(model, options, sync_every):
    prompts = torch.randint(3, VOCAB, (4, 5), generator=torch.Generator().manual_seed(5))
    plain, fast, step = generate_both(model, prompts, sync_every=sync_every, max_new_tokens=20, **options)
    assert torch.equal(fast.sequences, plain.sequences)
    assert step.replays >= 20 - 3 - len(step.recordings) and "step" not in step.recordings, step.recordings


def test_processors_that_read_the_tokens_keep_the_step_apart(model):
    """Only the model's step is recorded then (and for beam sampling); the choice runs on the host."""
    prompts = torch.randint(3, VOCAB, (2, 5), generator=torch.Generator().manual_seed(6))
    for options in (dict(repetition_penalty=1.3), dict(no_repeat_ngram_size=2), dict(bad_words_ids=[[3, 4]]),
                    dict(num_beams=2, do_sample=True, seed=0)):
        plain, fast, step = generate_both(model, prompts, max_new_tokens=12, **options)
        assert torch.equal(fast.sequences, plain.sequences), options
        assert set(step.recordings) == {"step"} and step.replays == 12 - 2, options  # 11 steps: a warm-up, 10 replays


def test_the_choice_never_waits_for_the_device(model):
    """Dynamo traces the whole choice as one graph (fullgraph): no .item(), no data-dependent shape, no sync."""
    torch.manual_seed(3)
    logits = torch.randn(4, VOCAB) * 3
    processors = ProcessorList([MinNewTokens(5, 10, [EOS]), TopK(5), TopP(0.9), BadWords([[7]])])
    prefix = torch.randint(3, VOCAB, (4, 5))
    choices = [Choice(prefix, 8, processors, [EOS], PAD, True, torch.Generator().manual_seed(0), True)
               for _ in range(2)]
    traced = torch.compile(choices[1].__call__, fullgraph=True, backend="eager")
    for _ in range(3):
        for choice in choices:
            choice.draw(logits)
        assert torch.equal(traced(logits), choices[0](logits))
        for choice in choices:
            choice.length += 1
    assert torch.equal(choices[0].sequences, choices[1].sequences)
    assert torch.equal(choices[0].generated, choices[1].generated)


def test_processor_plans():
    processors = ProcessorList([TopK(3), MinNewTokens(4, 2, [EOS]), ForcedEOS(10, [EOS])])
    assert not processors.reads_ids
    assert [processors.plan(n) for n in (4, 5, 6, 8, 9)] == [(True, False), (True, False), (False, False),
                                                              (False, False), (False, True)]
    assert ProcessorList([RepetitionPenalty(1.2)]).reads_ids
    assert ProcessorList([BadWords([[3, 4]])]).reads_ids and not ProcessorList([BadWords([[3]])]).reads_ids
    assert ProcessorList([lambda ids, scores: scores]).reads_ids  # undeclared: assumed to read them


def test_exponential_draws_have_the_exp1_distribution():
    """Inversion E = -log(1 - U): Exp(1)'s mean, variance and tail; finite, >= 0; the generator's stream."""
    e = exponential_(torch.empty(400_000), torch.Generator().manual_seed(0)).double()
    assert bool(torch.isfinite(e).all()) and float(e.min()) >= 0.0
    assert abs(float(e.mean()) - 1.0) < 0.01 and abs(float(e.var()) - 1.0) < 0.02  # sd of the mean: 0.0016
    for x in (0.1, 1.0, 3.0):  # P(E > x) = exp(-x)
        assert abs(float((e > x).double().mean()) - torch.exp(torch.tensor(-x)).item()) < 0.005
    again = exponential_(torch.empty(400_000), torch.Generator().manual_seed(0)).double()
    assert torch.equal(e, again)


def test_the_race_samples_the_softmax():
    """argmax p / E with E ~ Exp(1) picks token v with probability p[v] (the module docstring)."""
    scores = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    generator = torch.Generator().manual_seed(3)
    n = 200_000
    noise = exponential_(torch.empty(n, scores.numel()), generator)
    counts = torch.bincount(race(scores.expand(n, -1), noise), minlength=scores.numel()).double()
    p = scores.softmax(-1).double()
    assert torch.allclose(counts / n, p, atol=4 * (p * (1 - p) / n).sqrt().max().item())
