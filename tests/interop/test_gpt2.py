"""GPT-2 interop: seqlab's TransformerLM computes Hugging Face GPT2LMHeadModel's logits, cache or not."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from seqlab.errors import SeqlabError
from seqlab.interop import from_hf_gpt2, to_hf_gpt2
from seqlab.models.rnn_lm import RNNLanguageModel
from seqlab.models.transformer_lm import TransformerLM

TOL = dict(atol=1e-5, rtol=1e-5)


def random_hf_gpt2(seed: int) -> GPT2LMHeadModel:
    """A GPT-2 of random size (other GPT2Config fields at their defaults), eval mode."""
    rng = random.Random(seed)
    n_head = rng.choice([1, 2, 4])
    config = GPT2Config(n_layer=rng.randint(1, 3), n_head=n_head, n_embd=n_head * rng.choice([4, 8, 12]),
                        vocab_size=rng.randint(20, 300), n_positions=rng.randint(24, 64),
                        bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("seed", range(5))
def test_logits_agree_without_cache(seed):
    hf = random_hf_gpt2(seed)
    model = from_hf_gpt2(hf)
    idx = torch.randint(0, hf.config.vocab_size, (3, hf.config.n_positions))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, **TOL)


@pytest.mark.parametrize("seed", range(5))
def test_logits_agree_with_cache(seed):
    hf = random_hf_gpt2(seed)
    model = from_hf_gpt2(hf)
    T, n = 5, 10
    idx = torch.randint(0, hf.config.vocab_size, (2, T + n))
    with torch.no_grad():
        out = hf(idx[:, :T], use_cache=True)
        hf_cache, hf_logits = out.cache, [out.logits[:, -1]]
        logits, state = model.prefill(idx[:, :T], None, n)
        ours = [logits]
        for t in range(T, T + n):
            out = hf(idx[:, t:t + 1], cache=hf_cache, use_cache=True)
            hf_cache = out.cache
            hf_logits.append(out.logits[:, -1])
            logits, state = model.step(idx[:, t], state)
            ours.append(logits)
    torch.testing.assert_close(torch.stack(ours, 1), torch.stack(hf_logits, 1), **TOL)


def test_left_padded_prompts_match_hugging_face():
    """HF's left padding: padded keys masked, position ids = cumsum(mask) - 1 (0 on padding)."""
    hf = random_hf_gpt2(7)
    model = from_hf_gpt2(hf)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]])
    idx = torch.randint(0, hf.config.vocab_size, (3, 6))
    follow = torch.randint(0, hf.config.vocab_size, (3, 4))
    with torch.no_grad():
        positions = (mask.cumsum(1) - 1).masked_fill(mask == 0, 0)
        out = hf(idx, attention_mask=mask, position_ids=positions, use_cache=True)
        hf_cache, hf_logits = out.cache, [out.logits[:, -1]]
        logits, state = model.prefill(idx, mask, 4)
        ours = [logits]
        for t in range(4):
            mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1)
            positions = positions[:, -1:] + 1
            out = hf(follow[:, t:t + 1], attention_mask=mask, position_ids=positions, cache=hf_cache, use_cache=True)
            hf_cache = out.cache
            hf_logits.append(out.logits[:, -1])
            logits, state = model.step(follow[:, t], state)
            ours.append(logits)
    torch.testing.assert_close(torch.stack(ours, 1), torch.stack(hf_logits, 1), **TOL)


def test_greedy_tokens_match_hf_generate_on_left_padded_prompts():
    hf = random_hf_gpt2(3)
    with torch.no_grad():  # a large spread, so near-ties cannot flip an argmax
        hf.transformer.wte.weight.mul_(30)
    model = from_hf_gpt2(hf)
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]])
    idx = torch.randint(1, hf.config.vocab_size, (3, 4)).masked_fill(mask == 0, 0)
    with torch.no_grad():
        expected = hf.generate(idx, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
        logits, state = model.prefill(idx, mask, 8)
        tokens = []
        for _ in range(8):
            tokens.append(logits.argmax(-1))
            logits, state = model.step(tokens[-1], state)
    assert torch.equal(torch.cat([idx, torch.stack(tokens, 1)], 1), expected)


@pytest.mark.parametrize("change", [dict(tie_word_embeddings=False), dict(activation_function="gelu"),
                                    dict(activation_function="relu")])
def test_import_of_gpt2_variants(change):
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=30, n_positions=12,
                                    bos_token_id=None, eos_token_id=None, **change)).eval()
    model = from_hf_gpt2(hf)
    assert model.tie_embeddings == hf.config.tie_word_embeddings
    idx = torch.randint(0, 30, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, **TOL)


@pytest.mark.parametrize("seed", range(3))
def test_round_trip(seed):
    hf = random_hf_gpt2(seed)
    back = to_hf_gpt2(from_hf_gpt2(hf)).eval()
    assert back.lm_head.weight is back.transformer.wte.weight
    idx = torch.randint(0, hf.config.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, hf(idx).logits, **TOL)


def test_a_seqlab_model_with_gpt2_architecture_exports():
    torch.manual_seed(0)
    model = TransformerLM(41, n_layer=2, n_head=2, n_embd=8, context_length=16, activation="gelu_new").eval()
    hf = to_hf_gpt2(model, eos_token_id=3)
    assert hf.config.eos_token_id == 3 and not hf.training
    idx = torch.randint(0, 41, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), **TOL)


@pytest.mark.parametrize("kwargs, reason", [
    (dict(positions="rotary"), "positions are 'rotary'"),
    (dict(activation="gelu"), "GPT-2 uses gelu_new"),
    (dict(bias=False), "no biases"),
    (dict(tie_embeddings=False), "untied"),
])
def test_export_refuses_other_architectures(kwargs, reason):
    model = TransformerLM(20, n_layer=1, n_head=2, n_embd=8, context_length=8, **{"activation": "gelu_new", **kwargs})
    with pytest.raises(SeqlabError, match="does not have GPT-2's architecture") as info:
        to_hf_gpt2(model)
    assert reason in str(info.value)
    with pytest.raises(SeqlabError, match="only a seqlab TransformerLM"):
        to_hf_gpt2(RNNLanguageModel(20))


@pytest.mark.parametrize("change, reason", [
    (dict(n_inner=20), "n_inner 20"),
    (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
    (dict(activation_function="silu"), "activation_function 'silu'"),
    (dict(scale_attn_by_inverse_layer_idx=True), "attention scaling"),
])
def test_import_refuses_what_transformer_lm_cannot_compute(change, reason):
    hf = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, n_positions=8,
                                    bos_token_id=None, eos_token_id=None, **change))
    with pytest.raises(SeqlabError, match=reason):
        from_hf_gpt2(hf)
    with pytest.raises(SeqlabError, match="expected a Hugging Face GPT2LMHeadModel"):
        from_hf_gpt2(torch.nn.Linear(2, 2))
