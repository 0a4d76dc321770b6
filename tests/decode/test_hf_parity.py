"""generate() against Hugging Face generate(): the same GPT-2 weights in GPT2LMHeadModel and in seqlab.

The weights are drawn with a large spread (initializer_range 0.5), so next-token scores are far apart
and float rounding cannot flip an argmax or a beam ranking; the tokens must then agree exactly and
the beam scores within 1e-4.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from gpt2_pair import spread_gpt2_pair

from seqlab.decode import generate, left_pad

VOCAB, PROMPTS, PROMPT_LEN, NEW = 24, 20, 5, 8
PAD = 1  # not 0: HF fills beams with eos when pad_token_id is 0 (a falsy tensor)


@pytest.fixture(scope="module")
def models():
    return spread_gpt2_pair(VOCAB, n_positions=32, n_embd=32)


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(2, VOCAB, (PROMPTS, PROMPT_LEN), generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def common_eos(models, prompts):
    """A token that greedy decoding generates often, so EOS really ends sequences (of some prompts)."""
    hf, _ = models
    out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=NEW, do_sample=False,
                      pad_token_id=PAD)
    generated = out[:, PROMPT_LEN:].flatten()
    return int(torch.bincount(generated[generated != PAD], minlength=VOCAB).argmax())


def hf_generate(hf, prompts, **kw):
    return hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=NEW, do_sample=False,
                       pad_token_id=PAD, return_dict_in_generate=True, output_scores=True, **kw)


@pytest.mark.parametrize("use_eos", [False, True])
def test_greedy_matches_hf(models, prompts, common_eos, use_eos):
    hf, ours = models
    eos = common_eos if use_eos else None
    ref = hf_generate(hf, prompts, eos_token_id=eos)
    out = generate(ours, prompts, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(out.sequences, ref.sequences)
    if use_eos:
        assert (ref.sequences[:, PROMPT_LEN:] == eos).any(), "the EOS id should be generated"


# every (num_beams, length_penalty, early_stopping) combination; the other knobs cycle through their values
BEAM_CASES = [
    (nb, lp, es, ngram, use_eos, nrs)
    for i, (nb, lp, es) in enumerate(itertools.product([2, 3, 4, 5], [0.5, 1.0, 2.0], [True, False]))
    for ngram, use_eos, nrs in [([0, 3][i % 2], [True, False][(i // 2) % 2], 1 + i % nb)]
] + [(3, 2.0, "never", 0, True, 2), (4, 0.5, "never", 3, True, 4), (2, 1.0, "never", 0, False, 1)]


@pytest.mark.parametrize("num_beams, length_penalty, early_stopping, ngram, use_eos, nrs", BEAM_CASES)
def test_beam_search_matches_hf(models, prompts, common_eos, num_beams, length_penalty, early_stopping, ngram,
                                use_eos, nrs):
    hf, ours = models
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
              no_repeat_ngram_size=ngram, num_return_sequences=nrs, eos_token_id=common_eos if use_eos else None)
    ref = hf_generate(hf, prompts, **kw)
    out = generate(ours, prompts, max_new_tokens=NEW, pad_token_id=PAD, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(out.sequences_scores, ref.sequences_scores, atol=1e-4, rtol=0)


def test_eos_finishes_some_beams_early(models, prompts, common_eos):
    """The EOS cases above are meaningful: some returned hypotheses end before the length limit."""
    hf, ours = models
    out = generate(ours, prompts, max_new_tokens=NEW, num_beams=3, eos_token_id=common_eos, pad_token_id=PAD)
    ended = (out.sequences[:, PROMPT_LEN:] == common_eos).any(dim=1)
    assert ended.any()


def test_left_padded_batch_matches_hf(models):
    hf, ours = models
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(2, VOCAB, (n,), generator=g).tolist() for n in (1, 4, 7, 2, 7, 5)]
    input_ids, mask = left_pad(rows, PAD)
    ref = hf.generate(input_ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=PAD)
    out = generate(ours, input_ids, mask, max_new_tokens=NEW, pad_token_id=PAD)
    assert torch.equal(out.sequences, ref)
    ref = hf.generate(input_ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=PAD,
                      num_beams=3, repetition_penalty=1.3)
    out = generate(ours, input_ids, mask, max_new_tokens=NEW, pad_token_id=PAD, num_beams=3, repetition_penalty=1.3)
    assert torch.equal(out.sequences, ref)


def test_sampling_with_top_k_1_is_greedy(models, prompts):
    _, ours = models
    greedy = generate(ours, prompts, max_new_tokens=NEW)
    sampled = generate(ours, prompts, max_new_tokens=NEW, do_sample=True, top_k=1, temperature=0.7, seed=5)
    assert torch.equal(sampled.sequences, greedy.sequences)


def test_seeded_sampling_is_reproducible(models, prompts):
    _, ours = models
    kw = dict(max_new_tokens=NEW, do_sample=True, top_k=0, temperature=3.0, num_return_sequences=2)
    a = generate(ours, prompts, seed=11, **kw).sequences
    b = generate(ours, prompts, seed=11, **kw).sequences
    c = generate(ours, prompts, seed=12, **kw).sequences
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (2 * PROMPTS, PROMPT_LEN + NEW)


def test_processors_in_generate_match_hf(models, prompts, common_eos):
    hf, ours = models
    kw = dict(repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=4, eos_token_id=common_eos,
              bad_words_ids=[[3], [5, 6]], suppress_tokens=[7, 11])
    ref = hf_generate(hf, prompts, **kw)
    out = generate(ours, prompts, max_new_tokens=NEW, pad_token_id=PAD, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    ref = hf_generate(hf, prompts, num_beams=3, **kw)
    out = generate(ours, prompts, max_new_tokens=NEW, pad_token_id=PAD, num_beams=3, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(out.sequences_scores, ref.sequences_scores, atol=1e-4, rtol=0)
