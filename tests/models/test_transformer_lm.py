"""TransformerLM: forward contract, causality, and the decoder-state protocol (cache == no cache)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.config import ModelConfig
from seqlab.decode.state import DecoderModel
from seqlab.errors import ConfigError, SeqlabError
from seqlab.models import build_model
from seqlab.models.transformer_lm import TransformerLM

V = 37


def make(seed: int = 0, **kw) -> TransformerLM:
    torch.manual_seed(seed)
    args = dict(n_layer=2, n_head=2, n_embd=16, context_length=24) | kw
    model = TransformerLM(V, **args).eval()
    with torch.no_grad():  # a large spread, so near-ties cannot flip an argmax between the two paths
        model.transformer.wte.weight.mul_(20)
    return model


VARIANTS = [
    dict(),
    dict(positions="rotary"),
    dict(activation="gelu_new", bias=False),
    dict(activation="relu", tie_embeddings=False, positions="rotary"),
]


def test_forward_returns_logits_or_logits_and_loss():
    model = make()
    idx = torch.randint(0, V, (3, 7))
    logits = model(idx)
    assert logits.shape == (3, 7, V)
    targets = torch.randint(0, V, (3, 7))
    targets[0, :4] = -100
    logits2, loss = model(idx, targets)
    torch.testing.assert_close(logits2, logits)
    keep = targets != -100
    expected = -F.log_softmax(logits, -1)[keep].gather(1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_causal(variant):
    model = make(**variant)
    idx = torch.randint(0, V, (2, 9))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % V
    torch.testing.assert_close(model(idx)[:, :5], model(changed)[:, :5])
    assert not torch.allclose(model(idx)[:, 5:], model(changed)[:, 5:])


def test_tied_and_untied_embeddings():
    tied = make()
    assert tied.lm_head.weight is tied.transformer.wte.weight and tied.tie_embeddings
    untied = make(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert not untied.tie_embeddings


def test_biases_follow_the_option():
    names = {n for n, _ in make(bias=False).named_parameters()}
    assert not any(n.endswith("bias") for n in names)
    assert "transformer.h.0.attn.c_attn.bias" in {n for n, _ in make().named_parameters()}


def test_rotary_has_no_position_table():
    assert "wpe" not in make(positions="rotary").transformer
    assert make().transformer.wpe.weight.shape == (24, 16)


def greedy_cached(model, prompt, n):
    logits, state = model.prefill(prompt, None, n)
    tokens, all_logits = [], []
    for _ in range(n):
        all_logits.append(logits)
        tok = logits.argmax(-1)
        tokens.append(tok)
        logits, state = model.step(tok, state)
    return torch.stack(tokens, 1), torch.stack(all_logits, 1)


def greedy_uncached(model, prompt, n):
    seq, all_logits = prompt, []
    for _ in range(n):
        logits = model(seq)[:, -1]
        all_logits.append(logits)
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    return seq[:, prompt.shape[1]:], torch.stack(all_logits, 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_and_uncached_decoding_agree(variant):
    model = make(**variant)
    assert isinstance(model, DecoderModel) and model.max_length == 24 and not model.is_encoder_decoder
    prompt = torch.randint(0, V, (3, 5))
    with torch.no_grad():
        tok_c, log_c = greedy_cached(model, prompt, 12)
        tok_u, log_u = greedy_uncached(model, prompt, 12)
    assert torch.equal(tok_c, tok_u)
    torch.testing.assert_close(log_c, log_u, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS[:2])
def test_left_padded_batch_equals_rows_alone(variant):
    model = make(**variant)
    lengths = [6, 3, 1]
    prompt = torch.randint(0, V, (3, 6))
    mask = torch.tensor([[0] * (6 - n) + [1] * n for n in lengths])
    prompt = prompt.masked_fill(mask == 0, 7)  # padding id: any token, it must not matter
    follow = torch.randint(0, V, (3, 4))
    with torch.no_grad():
        logits, state = model.prefill(prompt, mask, 4)
        batch = [logits]
        for t in range(4):
            logits, state = model.step(follow[:, t], state)
            batch.append(logits)
        for b, n in enumerate(lengths):
            alone = model(torch.cat([prompt[b:b + 1, 6 - n:], follow[b:b + 1]], 1))[0, n - 1:]  # (5, V)
            torch.testing.assert_close(torch.stack([x[b] for x in batch]), alone, atol=1e-4, rtol=1e-5)


def test_reorder_state_expands_and_permutes():
    model = make()
    prompt = torch.randint(0, V, (3, 4))
    tok = torch.tensor([1, 2, 3])
    with torch.no_grad():
        _, state = model.prefill(prompt, None, 3)
        index = torch.tensor([2, 0, 0, 1, 2])
        expanded = model.reorder_state(state, index)
        logits, _ = model.step(tok[index], expanded)
        for row, src in enumerate(index.tolist()):
            _, alone = model.prefill(prompt[src:src + 1], None, 3)
            ref, _ = model.step(tok[src:src + 1], alone)
            torch.testing.assert_close(logits[row], ref[0], atol=1e-5, rtol=1e-5)


def test_reorder_in_place_keeps_buffer_addresses():
    """Without `filled` (the CUDA path, where a captured graph holds the addresses) buffers stay put."""
    model = make()
    with torch.no_grad():
        _, state = model.prefill(torch.randint(0, V, (3, 4)), None, 2)
        before = state.cache.keys[0].clone()
        address = state.cache.keys[0].data_ptr()
        cache = state.cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.keys[0].data_ptr() == address
    assert torch.equal(cache.keys[0], before[[1, 1, 0]])


def test_cpu_reorder_gathers_filled_slots_into_two_alternating_buffer_sets():
    model = make()
    with torch.no_grad():
        _, state = model.prefill(torch.randint(0, V, (3, 4)), None, 2)
        first = state.cache.keys[0].data_ptr()
        expected = state.cache.values[1][[1, 1, 0]][:, :, :4]
        state = model.reorder_state(state, torch.tensor([1, 1, 0]))
        second = state.cache.keys[0].data_ptr()
        assert torch.equal(state.cache.values[1][:, :, :4], expected)
        model.step(torch.tensor([1, 2, 3]), state)
        expected = state.cache.keys[0][[2, 0, 1]][:, :, :5]
        state = model.reorder_state(state, torch.tensor([2, 0, 1]))
    assert second != first and state.cache.keys[0].data_ptr() == first
    assert torch.equal(state.cache.keys[0][:, :, :5], expected)


def test_too_long_inputs_are_refused():
    model = make()
    with pytest.raises(SeqlabError, match="context length 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(SeqlabError, match="exceeds the model's context length 24"):
        model.prefill(torch.zeros(1, 20, dtype=torch.long), None, 5)


def test_registry_builds_from_config():
    cfg = ModelConfig(arch="transformer_lm", n_layer=3, n_head=2, n_embd=8, context_length=11, positions="rotary",
                      activation="relu", bias=False, tie_embeddings=False)
    model = build_model(cfg, 50, pad_id=0)
    assert isinstance(model, TransformerLM)
    assert (model.n_layer, model.n_head, model.n_embd, model.max_length, model.vocab_size) == (3, 2, 8, 11, 50)
    assert (model.positions, model.activation, model.bias, model.tie_embeddings) == ("rotary", "relu", False, False)
    with pytest.raises(ConfigError, match="model.positions"):
        build_model(ModelConfig(arch="transformer_lm", positions="sinusoidal"), 50)
    with pytest.raises(SeqlabError, match="even head size"):
        TransformerLM(10, n_head=3, n_embd=9, positions="rotary")


def test_step_updates_the_state_in_place():
    """What a CUDA graph replay relies on: every state tensor keeps its address across steps."""
    model = make()
    with torch.no_grad():
        _, state = model.prefill(torch.randint(0, V, (2, 3)), None, 4)
        tensors = [state.cache.keys[0], state.cache.values[1], state.key_valid, state.slot, state.position]
        addresses = [t.data_ptr() for t in tensors]
        for token in range(3):
            _, state = model.step(torch.full((2,), token), state)
    assert [t.data_ptr() for t in (state.cache.keys[0], state.cache.values[1], state.key_valid, state.slot,
                                   state.position)] == addresses
    assert state.slot.tolist() == [6] and state.position.tolist() == [6, 6]
    assert state.key_valid.tolist() == [[True] * 6 + [False]] * 2
    assert model.capturable_step


def test_padded_prefill_runs_the_real_tokens_only(monkeypatch):
    """With padding, the per-token layers see the N real tokens (seqlab.modules.packing); the logits and the
    real slots' keys are those of the padded batch, and the padding slots' keys are zeros."""
    model = make()
    lengths = [6, 2, 4]
    prompt = torch.randint(0, V, (3, 6))
    mask = torch.tensor([[0] * (6 - n) + [1] * n for n in lengths])
    rows = []
    model.transformer.h[0].attn.c_attn.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    with torch.no_grad():
        logits, state = model.prefill(prompt, mask, 2)
        assert rows == [sum(lengths)]  # (N, C): 12 tokens, not 3 x 6
        monkeypatch.setattr("seqlab.modules.packing.Packed.of", classmethod(lambda cls, real: None))
        padded_logits, padded_state = model.prefill(prompt, mask, 2)
    assert rows[-1] == 3  # the padded batch: (B, T, C)
    torch.testing.assert_close(logits, padded_logits, atol=1e-5, rtol=1e-5)
    real = mask.bool()
    for layer in range(model.n_layer):
        keys, padded_keys = state.cache.keys[layer][:, :, :6], padded_state.cache.keys[layer][:, :, :6]  # (B, nh, T, hs)
        torch.testing.assert_close(keys.transpose(1, 2)[real], padded_keys.transpose(1, 2)[real], atol=1e-5, rtol=1e-5)
        assert not keys.transpose(1, 2)[~real].any()
