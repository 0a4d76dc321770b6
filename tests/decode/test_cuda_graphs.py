"""The GPU fast path (seqlab.decode.graphs): the captured CUDA-graph step (the model's, or compiled by
Inductor) recorded with the token choice (greedy, sampling, beam search), checked for the end every 16
tokens, gives the tokens of eager decoding checked every token, and of HF generate(). Needs a GPU.

The GPT-2 weights have a large spread (initializer_range 0.5) so that rounding differences between
kernels cannot flip an argmax or a beam ranking.
"""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
from gpt2_pair import spread_gpt2_pair

from seqlab.decode import generate, left_pad
from seqlab.decode.graphs import SYNC_EVERY_CUDA

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

generate_module = importlib.import_module("seqlab.decode.generate")  # the module, not the function it exports
VOCAB, NEW, PAD = 24, 40, 1  # NEW > 2 * SYNC_EVERY_CUDA: the host checks for the end twice, then trims


@pytest.fixture(scope="module")
def pair():
    hf, ours = spread_gpt2_pair(VOCAB, n_positions=64, n_embd=64)
    return hf.cuda(), ours.cuda().eval()


@pytest.fixture(scope="module")
def prompts():
    rows = torch.randint(2, VOCAB, (6, 7), generator=torch.Generator().manual_seed(7)).tolist()
    ids, mask = left_pad([rows[0][:4], *rows[1:]], PAD)  # row 0 left-padded
    return ids.cuda(), mask.cuda()


def _eager(model, ids, mask, **options):
    """generate() with the fast path off and the end checked after every token."""
    saved = generate_module.use_fast_path
    generate_module.use_fast_path = lambda *args: False
    try:
        return generate(model, ids, mask, sync_every=1, **options)
    finally:
        generate_module.use_fast_path = saved


def test_the_captured_step_gives_eager_tokens(pair, prompts):
    _, ours = pair
    ids, mask = prompts
    greedy = _eager(ours, ids, mask, max_new_tokens=NEW, pad_token_id=PAD).sequences
    generated = greedy[:, ids.shape[1]:].flatten()
    eos = int(torch.bincount(generated, minlength=VOCAB).argmax())  # a token greedy decoding really makes
    assert SYNC_EVERY_CUDA < NEW
    for options in (dict(), dict(eos_token_id=eos), dict(do_sample=True, top_k=10, seed=3, eos_token_id=eos),
                    dict(do_sample=True, top_k=10, top_p=0.9, min_new_tokens=20, seed=4, eos_token_id=eos),
                    dict(num_beams=3, num_return_sequences=2, eos_token_id=eos),
                    dict(num_beams=4, length_penalty=2.0, min_new_tokens=20, eos_token_id=eos)):
        options = dict(options, max_new_tokens=NEW, pad_token_id=PAD)
        eager = _eager(ours, ids, mask, **options)
        for compiled in (False, True):  # the recorded step: the model's, or Inductor's compiled form of it
            with warnings.catch_warnings():
                for fallback in ("compiling the decode step failed", "CUDA graph capture failed"):
                    warnings.filterwarnings("error", message=fallback)  # no silent fallback
                fast = generate(ours, ids, mask, compile_step=compiled, **options)
            assert torch.equal(fast.sequences, eager.sequences), (options, compiled)
            assert (fast.first_step_seconds is not None) == compiled  # the compiling step, timed
            if eager.sequences_scores is not None:
                torch.testing.assert_close(fast.sequences_scores, eager.sequences_scores, atol=1e-4, rtol=0)


def test_gpu_greedy_and_beam_search_match_hf(pair, prompts):
    hf, ours = pair
    ids = prompts[0][1:]  # the rows without padding
    for options in (dict(), dict(num_beams=4, length_penalty=2.0, num_return_sequences=2)):
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False,
                          pad_token_id=PAD, **options)
        out = generate(ours, ids, max_new_tokens=NEW, pad_token_id=PAD, **options)
        assert torch.equal(out.sequences, ref), options
