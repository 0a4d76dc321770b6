"""Beam search on hand-written probability tables, step by step (after OpenNMT-py's reference-case test).

Tokens: 0 <pad>, 1 <eos>, 2 a, 3 b, 4 c. The model is Markov: p(next | last token) from a table, so
every candidate's score can be worked out by hand. num_beams = 2, so K = 4 candidates per step.
Cutting the search after 1, 2, 3 steps checks the state after each step.
"""

from __future__ import annotations

import math

import pytest
import torch
from decode_fakes import EOS, PAD, A, B, C, MarkovLM, StaticRNN
from graph_emulator import generate_both

from seqlab.decode import generate
from seqlab.decode.beam import LengthPenalty

L = math.log

# scenario 1: prompt [a]
TABLE_1 = {
    A: [0, .15, .5, .3, .05],  # after a: a .5, b .3, eos .15, c .05
    B: [0, .9, .05, .03, .02],  # after b: eos .9
}


def beam(model, prompt, max_new, **kw):
    out = generate(model, torch.tensor([prompt]), max_new_tokens=max_new, num_beams=2, num_return_sequences=2,
                   eos_token_id=EOS, pad_token_id=PAD, **kw)
    return out.sequences.tolist(), out.sequences_scores.tolist()


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
def test_step_1_eos_outside_top_beams_does_not_finish(lp):
    # candidates a .5, b .3, eos .15, c .05: all hit the length limit; only the top 2 (a, b) finish —
    # eos (rank 3) is a backup candidate, never a hypothesis
    seqs, scores = beam(MarkovLM(TABLE_1), [A], 1, length_penalty=lp)
    assert seqs == [[A, A], [A, B]]
    assert scores == pytest.approx([L(.5), L(.3)], abs=1e-6)


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
def test_step_2(lp):
    # step 1 left running [a a] (.5) and [a b] (.3). Step 2 candidates: from [a a]: a .25, b .15, eos .075;
    # from [a b]: eos .27. Top 4: eos(ab) .27, a(aa) .25, b(aa) .15, eos(aa) .075 — all at the limit;
    # the best two finish, divided by their generated length 2 ** lp
    seqs, scores = beam(MarkovLM(TABLE_1), [A], 2, length_penalty=lp)
    assert seqs == [[A, B, EOS], [A, A, A]]
    assert scores == pytest.approx([L(.27) / 2 ** lp, L(.25) / 2 ** lp], abs=1e-6)


@pytest.mark.parametrize("lp, expected_seqs, expected_scores", [
    # step 2 finished [a b eos] (.27, length 2) and kept running [a a a] (.25), [a a b] (.15). Step 3:
    # eos([a a b]) .135, a([a a a]) .125 finish at length 3; the best two of the three hypotheses win.
    (0.0, [[A, B, EOS, PAD], [A, A, B, EOS]], [L(.27), L(.135)]),
    (1.0, [[A, B, EOS, PAD], [A, A, B, EOS]], [L(.27) / 2, L(.135) / 3]),
    (2.0, [[A, A, B, EOS], [A, A, A, A]], [L(.135) / 9, L(.125) / 9]),  # a long-favouring penalty
])
def test_step_3_length_penalty_decides(lp, expected_seqs, expected_scores):
    seqs, scores = beam(MarkovLM(TABLE_1), [A], 3, length_penalty=lp)
    assert seqs == expected_seqs
    assert scores == pytest.approx(expected_scores, abs=1e-6)


# scenario 2: prompt [c]; EOS is likely everywhere, and length_penalty 3 rewards length a lot
TABLE_2 = {
    C: [0, .6, .3, .07, .03],
    A: [0, .5, .4, .06, .04],
    B: [0, .5, .3, .1, .1],
}


@pytest.mark.parametrize("early_stopping", [True, False, "never"])
def test_early_stopping(early_stopping):
    # step 1: eos .6 ranks first -> finishes [eos] at L(.6) / 1; running [a] .3, [b] .07.
    # step 2: eos([a]) .15 ranks first -> finishes [a eos] at L(.15) / 8 = -0.237; running [a a] .12,
    #   [b a] .021 (eos([b]) .035 ranks third: not a hypothesis). Two hypotheses have finished:
    #   True stops here. False: can [a a] still win? L(.12) / 2**3 = -0.265 > worst finished L(.6) = -0.511,
    #   so go on ("never" assumes the longest length, 3: also go on).
    # step 3 (the limit): eos([a a]) .06 and a([a a]) .048 finish at length 3: L(.06) / 27, L(.048) / 27.
    seqs, scores = beam(MarkovLM(TABLE_2), [C], 3, length_penalty=3.0, early_stopping=early_stopping)
    if early_stopping is True:
        assert seqs == [[C, A, EOS], [C, EOS, PAD]]
        assert scores == pytest.approx([L(.15) / 8, L(.6)], abs=1e-6)
    else:
        assert seqs == [[C, A, A, EOS], [C, A, A, A]]
        assert scores == pytest.approx([L(.06) / 27, L(.048) / 27], abs=1e-6)


def test_state_follows_the_beams():
    """The model is fed each surviving beam's last token: [a a] and [a b] after step 1 of scenario 1."""
    model = MarkovLM(TABLE_1)
    beam(model, [A], 2)
    assert model.calls == [[A, B]]


def test_batched_inputs_are_independent():
    model = MarkovLM({**TABLE_1, **{C: TABLE_2[C]}})
    out = generate(model, torch.tensor([[A], [A]]), max_new_tokens=3, num_beams=2, eos_token_id=EOS,
                   pad_token_id=PAD, length_penalty=2.0)
    alone = generate(model, torch.tensor([[A]]), max_new_tokens=3, num_beams=2, eos_token_id=EOS, pad_token_id=PAD,
                     length_penalty=2.0)
    assert out.sequences.tolist() == alone.sequences.tolist() * 2


def test_check_every_k_steps_gives_the_same_result():
    """On a GPU the host checks for the end every k steps; the extra steps must not change anything."""
    for es in (True, False):
        ref = generate(MarkovLM(TABLE_2), torch.tensor([[C]]), max_new_tokens=12, num_beams=2, eos_token_id=EOS,
                       pad_token_id=PAD, early_stopping=es, length_penalty=3.0, num_return_sequences=2)
        lazy = generate(MarkovLM(TABLE_2), torch.tensor([[C]]), max_new_tokens=12, num_beams=2, eos_token_id=EOS,
                        pad_token_id=PAD, early_stopping=es, length_penalty=3.0, num_return_sequences=2, sync_every=8)
        assert torch.equal(ref.sequences, lazy.sequences)
        assert torch.equal(ref.sequences_scores, lazy.sequences_scores)


@pytest.mark.parametrize("options", [
    dict(length_penalty=2.0, early_stopping=True, num_return_sequences=2),
    dict(length_penalty=0.5, early_stopping=False, min_new_tokens=5),  # two processor plans
    dict(length_penalty=1.0, early_stopping="never", forced_eos_token_id=EOS, suppress_tokens=[3]),
])
def test_the_recorded_step_gives_the_loops_beams(options):
    """The GPU fast path records each step's choice with the model's step (`Beams.choose`, then the state's
    reorder) in one CUDA graph per plan; CapturedStep run with emulated graphs (graph_emulator) gives the
    plain loop's beams and scores."""
    prompts = torch.randint(2, 9, (3, 4), generator=torch.Generator().manual_seed(1))
    plain, fast, step = generate_both(StaticRNN(9, max_length=40), prompts, fast=dict(sync_every=8), num_beams=3,
                                      max_new_tokens=24, eos_token_id=EOS, pad_token_id=PAD, **options)
    assert step.replays > 0
    assert torch.equal(fast.sequences, plain.sequences)
    assert torch.equal(fast.sequences_scores, plain.sequences_scores)


def test_the_length_penalty_table_is_hfs_arithmetic():
    """HF divides by the Python number n ** lp; the table (for a length held on the device) gives the same bits."""
    scores = torch.randn(64, 8) * 20
    for lp in (0.5, 1.0, 2.0, -0.7):
        penalty = LengthPenalty(lp, 50, torch.device("cpu"))
        for n in (1, 2, 7, 50):
            assert torch.equal(penalty(scores, torch.tensor([n])), scores / (n ** lp))
            assert torch.equal(penalty(scores, n), scores / (n ** lp))


def test_a_recorded_step_never_waits_for_the_device():
    """With the end checked every few steps, Dynamo traces `Beams.choose` as one graph (fullgraph): no
    .item(), no data-dependent shape, no sync — what a CUDA graph needs to record it."""
    from seqlab.decode.beam import Beams
    from seqlab.decode.processors import MinNewTokens, ProcessorList

    torch.manual_seed(4)
    prefix = torch.randint(2, 9, (2, 3)).repeat_interleave(3, dim=0)  # (B * nb, P), B = 2, nb = 3
    searches = [Beams(prefix, None, lambda state, index: state, num_beams=3, max_new_tokens=6,
                      processors=ProcessorList([MinNewTokens(3, 2, [EOS])]), eos_ids=[EOS], fill_id=PAD,
                      length_penalty=1.5, early_stopping=False, do_sample=False, generator=None, stop=None,
                      sync_every=8) for _ in range(2)]
    traced = torch.compile(searches[1].choose, fullgraph=True, backend="eager")
    for _ in range(6):
        logits = torch.randn(6, 9) * 3
        assert torch.equal(traced(logits), searches[0].choose(logits))
        for search in searches:
            search.length += 1
    for name in ("sequences", "scores", "lengths", "flags"):
        assert torch.equal(getattr(searches[0].finished, name), getattr(searches[1].finished, name)), name
