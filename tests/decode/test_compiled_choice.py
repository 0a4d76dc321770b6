"""seqlab.decode.compiled_choice: the CPU compiled token choice gives eager decoding's tokens, log-probabilities and
lengths; one graph per kind of choice, shared across prompt lengths; eager where a processor reads the tokens."""

from __future__ import annotations

import warnings

import pytest
import torch

from seqlab.decode import compiled_choice, generate
from seqlab.decode.compiled import compiled_step_for
from seqlab.models.transformer_lm import TransformerLM


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = TransformerLM(40, n_layer=1, n_head=2, n_embd=64, context_length=64, dropout=0.0).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)  # a wide logit spread: rounding-level differences cannot flip a choice
    return m


def _both(model, ids, **options):
    eager = generate(model, ids, max_new_tokens=24, **options)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compiling the decode step failed")
        fast = generate(model, ids, max_new_tokens=24, compile_step=True, **options)
    return eager, fast


@pytest.mark.parametrize("options", [
    dict(),  # greedy, no EOS
    dict(eos_token_id=[3, 5], min_new_tokens=6),  # a plan that changes once min_new_tokens is reached
    dict(do_sample=True, temperature=0.8, top_k=12, top_p=0.9, seed=4, eos_token_id=3),
    dict(do_sample=True, min_p=0.05, seed=5, num_return_sequences=2),
])
def test_compiled_choice_equals_eager(model, options, monkeypatch):
    compile_choice, replays = compiled_choice._compile, []

    def recorded(*args):
        tokens, replay = compile_choice(*args)
        replays.append(replay)
        return tokens, replay

    monkeypatch.setattr(compiled_choice, "_compile", recorded)
    ids = torch.randint(1, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    eager, fast = _both(model, ids, **options)
    assert replays and None not in replays  # compiled, not chosen eagerly (two plans with min_new_tokens)
    assert torch.equal(fast.sequences, eager.sequences)
    assert torch.equal(fast.lengths, eager.lengths)
    torch.testing.assert_close(fast.token_logprobs, eager.token_logprobs, atol=1e-4, rtol=0)
    assert fast.finish_reasons == eager.finish_reasons


def test_one_graph_serves_other_prompt_lengths_and_budgets(model):
    options = dict(do_sample=True, top_k=7, seed=9)
    ids = torch.randint(1, 40, (1, 5), generator=torch.Generator().manual_seed(2))
    _both(model, ids, **options)
    kinds = len(compiled_choice._GRAPHS)
    for length, new in ((3, 10), (11, 30)):
        ids = torch.randint(1, 40, (1, length), generator=torch.Generator().manual_seed(length))
        eager = generate(model, ids, max_new_tokens=new, **options)
        fast = generate(model, ids, max_new_tokens=new, compile_step=True, **options)
        assert torch.equal(fast.sequences, eager.sequences)
    assert len(compiled_choice._GRAPHS) == kinds  # nothing compiled again
    assert all(replay is not None for replay in compiled_choice._GRAPHS.values())


def test_a_processor_reading_the_tokens_keeps_the_choice_eager(model, monkeypatch):
    calls = []
    monkeypatch.setattr(compiled_choice, "_compile", lambda *a: calls.append(a) or pytest.fail("compiled"))
    ids = torch.randint(1, 40, (1, 6), generator=torch.Generator().manual_seed(3))
    eager, fast = _both(model, ids, repetition_penalty=1.3)
    assert torch.equal(fast.sequences, eager.sequences) and calls == []


def test_a_second_decoding_steps_without_dynamo(model, monkeypatch):
    """The first decoding at a batch size compiles the step and keeps Inductor's function: later ones call it."""
    ids = torch.randint(1, 40, (3, 6), generator=torch.Generator().manual_seed(4))
    eager, fast = _both(model, ids)
    graph = compiled_step_for(model)
    assert model.__dict__["_compiled_step"].replays  # kept on the model
    monkeypatch.setattr(type(graph), "__call__", lambda *a, **k: pytest.fail("went through Dynamo"))
    again = generate(model, ids, max_new_tokens=24, compile_step=True)
    assert torch.equal(again.sequences, eager.sequences)


def test_beam_search_that_syncs_every_few_steps_keeps_its_choice_eager(model):
    """With sync_every > 1 beam search hands `Beams.choose` to the step's `advance`: the compiled step, an
    eager choice, and eager search's beams."""
    ids = torch.randint(1, 40, (2, 5), generator=torch.Generator().manual_seed(5))
    options = dict(max_new_tokens=12, num_beams=3, eos_token_id=4, sync_every=4)
    eager = generate(model, ids, **options)
    fast = generate(model, ids, compile_step=True, **options)
    assert torch.equal(fast.sequences, eager.sequences)
    torch.testing.assert_close(fast.sequences_scores, eager.sequences_scores, atol=1e-4, rtol=0)


def test_past_the_limit_of_kinds_a_new_kind_chooses_eagerly(model, monkeypatch):
    """A server's or a notebook's many settings: past MAX_GRAPHS kinds nothing more is compiled."""
    monkeypatch.setattr(compiled_choice, "MAX_GRAPHS", len(compiled_choice._GRAPHS))
    monkeypatch.setattr(compiled_choice, "_compile", lambda *a: pytest.fail("compiled past the limit"))
    ids = torch.randint(1, 40, (2, 6), generator=torch.Generator().manual_seed(6))
    eager, fast = _both(model, ids, do_sample=True, temperature=0.61, seed=2)
    assert torch.equal(fast.sequences, eager.sequences)


def test_a_compile_that_fails_after_running_leaves_the_decoding_as_eager(model, monkeypatch):
    """torch.compile can raise after its frame ran (fullgraph with compiling disabled does): the choice's
    tensors are put back before the eager choice, so no token is counted twice."""
    def ran_then_failed(choice, logits):
        choice(logits)
        raise RuntimeError("found no compiled frames")

    monkeypatch.setattr(compiled_choice, "_compiled_call", ran_then_failed)
    monkeypatch.setattr(compiled_choice, "_GRAPHS", {})
    monkeypatch.setattr("seqlab.decode.compiled._WARNED", set())
    ids = torch.randint(1, 40, (2, 5), generator=torch.Generator().manual_seed(7))
    eager = generate(model, ids, max_new_tokens=20, do_sample=True, top_k=9, seed=1)
    with pytest.warns(UserWarning, match="compiling the token choice failed"):
        fast = generate(model, ids, max_new_tokens=20, do_sample=True, top_k=9, seed=1, compile_step=True)
    assert torch.equal(fast.sequences, eager.sequences) and torch.equal(fast.lengths, eager.lengths)
    torch.testing.assert_close(fast.token_logprobs, eager.token_logprobs, atol=1e-4, rtol=0)
    with torch._dynamo.config.patch(disable=True):  # TORCH_COMPILE_DISABLE=1: not even tried
        monkeypatch.setattr(compiled_choice, "_GRAPHS", {})
        monkeypatch.setattr(compiled_choice, "_compile", lambda *a: pytest.fail("compiled while disabled"))
        assert torch.equal(generate(model, ids, max_new_tokens=20, compile_step=True).sequences,
                           generate(model, ids, max_new_tokens=20).sequences)
