"""The CPU compiled step (seqlab.decode.compiled): the same tokens as eager decoding, rebuilt on new weights, eager fallback."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from seqlab.decode import compiled, generate
from seqlab.decode.compiled import can_compile, compiled_step_for
from seqlab.models.rnn_lm import RNNLanguageModel
from seqlab.models.transformer_lm import TransformerLM


@pytest.fixture(scope="module")
def model():
    """n_embd 256: the MLP weights (256 x 1024) are large enough for the packed oneDNN Linear that Inductor folds."""
    torch.manual_seed(0)
    m = TransformerLM(50, n_layer=1, n_head=4, n_embd=256, context_length=48, dropout=0.0).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(4.0)  # a wide logit spread: rounding-level differences cannot flip an argmax
    return m


def test_compiled_tokens_equal_eager(model):
    torch.manual_seed(1)
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # a left-padded prompt
    for options in (dict(), dict(do_sample=True, top_k=20, top_p=0.9, seed=3), dict(num_beams=3)):
        eager = generate(model, ids, mask, max_new_tokens=20, **options)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="compiling the decode step failed")  # no silent fallback
            fast = generate(model, ids, mask, max_new_tokens=20, compile_step=True, **options)
        assert torch.equal(fast.sequences, eager.sequences), options
        if eager.sequences_scores is not None:
            torch.testing.assert_close(fast.sequences_scores, eager.sequences_scores, atol=1e-4, rtol=0)


def test_compiled_many_rows_up_to_the_whole_context(model):
    """10 rows: the products run on oneDNN, not as fused reductions; prompt + new tokens = the context, so
    the attention window (a dynamic size of the one graph) grows from the prompt to the end of the context."""
    ids = torch.randint(1, 50, (10, 8), generator=torch.Generator().manual_seed(4))
    new = model.max_length - ids.shape[1]
    options = dict(max_new_tokens=new, min_new_tokens=new, do_sample=True, top_k=20, seed=5)
    eager = generate(model, ids, **options)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compiling the decode step failed")
        fast = generate(model, ids, compile_step=True, **options)
    assert fast.sequences.shape[1] == model.max_length
    assert torch.equal(fast.sequences, eager.sequences)
    assert fast.first_step_seconds > 0 and eager.first_step_seconds is None  # the compiling step, timed


def _peaky(seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    m = TransformerLM(50, n_layer=1, n_head=4, n_embd=256, context_length=48, dropout=0.0).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(4.0)
    return m


def test_each_model_and_each_weight_update_gets_its_own_frozen_graph():
    a, b = _peaky(10), _peaky(11)  # same shapes, other weights: the frozen constants must not be shared
    ids = torch.randint(1, 50, (1, 6), generator=torch.Generator().manual_seed(2))

    def both(m):
        return (generate(m, ids, max_new_tokens=16).sequences,
                generate(m, ids, max_new_tokens=16, compile_step=True).sequences)

    for m in (a, b):
        eager, fast = both(m)
        assert torch.equal(fast, eager)
    graph = compiled_step_for(a)
    assert compiled_step_for(a) is graph  # kept on the model while its weights stay
    before = generate(a, ids, max_new_tokens=16).sequences
    with torch.no_grad():
        a.lm_head.weight.mul_(-1.0)  # an in-place update: same tensors, a new version counter
    eager, fast = both(a)
    assert not torch.equal(eager, before) and torch.equal(fast, eager)
    assert copy.deepcopy(a).__dict__["_compiled_step"] is None  # a copy compiles its own


def test_only_fp32_transformers_on_cpu_compile(model):
    assert can_compile(model)
    assert not can_compile(copy.deepcopy(model).double())
    rnn = RNNLanguageModel(50, cell="gru", n_layer=1, n_embd=8, hidden_size=8).eval()
    assert not can_compile(rnn)
    ids = torch.randint(1, 50, (1, 4))
    assert torch.equal(generate(rnn, ids, max_new_tokens=5, compile_step=True).sequences,
                       generate(rnn, ids, max_new_tokens=5).sequences)  # ignored where it does not apply


def test_a_failed_compile_warns_and_decodes_eagerly(model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nmore detail")

    monkeypatch.setattr(compiled, "compiled_step_for", lambda m: broken)
    monkeypatch.setattr(compiled, "_WARNED", set())
    ids = torch.randint(1, 50, (1, 5))
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        out = generate(model, ids, max_new_tokens=8, compile_step=True)
    assert torch.equal(out.sequences, generate(model, ids, max_new_tokens=8).sequences)


def test_compiled_beam_search_reorders_a_table_of_rows_not_the_cache(model, monkeypatch):
    """The compiled beam step reads each beam's slots through `rows`: the beams of eager search, and the
    cache is never copied between rows (reorder_state runs once: prefill's expansion into beams)."""
    ids = torch.randint(1, 50, (2, 5), generator=torch.Generator().manual_seed(6))
    options = dict(max_new_tokens=24, num_beams=4, num_return_sequences=2, eos_token_id=7, length_penalty=0.7)
    eager = generate(model, ids, **options)
    calls = []
    reorder_state = type(model).reorder_state
    monkeypatch.setattr(type(model), "reorder_state", lambda m, s, i: calls.append(i) or reorder_state(m, s, i))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compiling the decode step failed")
        fast = generate(model, ids, compile_step=True, **options)
    assert torch.equal(fast.sequences, eager.sequences)
    torch.testing.assert_close(fast.sequences_scores, eager.sequences_scores, atol=1e-4, rtol=0)
    assert len(calls) == 1


@torch.no_grad()
def test_the_rows_table_materialized_equals_the_reordered_cache(model):
    """What the eager fallback of a beam search sees: the cache put in order by the rows table equals the
    cache reordered row by row (a compile that fails after beams moved must not mix their histories)."""
    ids = torch.randint(1, 50, (4, 6), generator=torch.Generator().manual_seed(8))
    expected = model.prefill(ids, None, 10)[1]
    state = model.prefill(ids, None, 10)[1]
    step = compiled.CompiledStep(model, beams=True)  # compiles only at its first call: never here
    for index in ([2, 2, 0, 1], [3, 1, 1, 0], [1, 0, 3, 3]):
        index = torch.tensor(index)
        expected = model.reorder_state(expected, index)
        state = step.reorder(state, index)
    step._materialize(state)
    filled = int(state.slot)
    for got, want in zip(state.cache.keys + state.cache.values, expected.cache.keys + expected.cache.values, strict=True):
        assert torch.equal(got[:, :, :filled], want[:, :, :filled])
    assert torch.equal(state.key_valid, expected.key_valid) and torch.equal(state.position, expected.position)


def test_past_dynamos_recompile_limit_a_decoding_goes_on_eagerly(monkeypatch):
    """Each model's step is a cache entry of the one `_StepGraph.forward`. Past Dynamo's limit Dynamo would run
    the first call eagerly, and the later calls, which skip the guards, would replay the other model's graph:
    wrong tokens, silently. The first call fails instead and the step decodes eagerly (the suite itself hit
    the limit once, after enough models)."""
    torch._dynamo.reset_code(compiled._StepGraph.forward.__code__)
    monkeypatch.setattr(compiled, "RECOMPILE_LIMIT", 1)
    ids = torch.randint(1, 50, (1, 6), generator=torch.Generator().manual_seed(3))
    # Dynamo's config through its own patch: monkeypatch's undo leaves the config module without the key
    with torch._dynamo.config.patch(recompile_limit=1, accumulated_recompile_limit=256):
        for seed in (20, 21):  # the second model's graph is one entry too many
            m = _peaky(seed)
            assert torch.equal(generate(m, ids, max_new_tokens=8, compile_step=True).sequences,
                               generate(m, ids, max_new_tokens=8).sequences)
    torch._dynamo.reset_code(compiled._StepGraph.forward.__code__)
