"""The continuous batch through compiled steps of 1, 2, 4 rows: the same tokens as the eager batch and as
generate() alone, whatever size the running rows pad to; models it cannot compile step eagerly."""

from __future__ import annotations

import pytest
import torch
from test_batching import alone, build, options

from seqlab.data.tokenizers import CharTokenizer
from seqlab.decode import batching
from seqlab.decode.batching import ContinuousBatch
from seqlab.decode.bucketed import BucketedStep, row_counts
from seqlab.decode.compiled import INDUCTOR_OPTIONS

TEXT = "the quick brown fox jumps over the lazy dog. ABC, 0123!\n"

# (id, prompt, options, step it joins at): 1, 2, 3 (padded to 4), 4, then fewer rows run at once
REQUESTS = [
    ("greedy", "the quick", dict(max_new_tokens=14), 0),
    ("sampled", "a", dict(max_new_tokens=20, do_sample=True, top_k=0, seed=1), 1),
    ("penalised", "fox", dict(max_new_tokens=9, repetition_penalty=1.5), 3),
    ("nucleus", "lazy dog.", dict(max_new_tokens=6, do_sample=True, top_p=0.8, temperature=0.7, seed=2), 5),
]


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train([TEXT])


@pytest.fixture(scope="module")
def model(tok):
    """One Transformer for the module: its compiled graphs (one per size) are kept on it, compiled once."""
    return build("transformer", tok)


def decode(model, tok, compile: bool) -> tuple[dict[str, list], list[int]]:
    """Each request's events, and the rows of every step."""
    batch = ContinuousBatch(model, tok, max_batch=4, compile=compile)
    events: dict[str, list] = {rid: [] for rid, *_ in REQUESTS}
    rows = []
    for t in range(100):
        for rid, prompt, kw, join in REQUESTS:
            if join == t:
                batch.add(rid, tok.encode(prompt), options(tok, **kw))
        rows.append(len(batch.rows))
        for event in batch.step():
            events[event.request_id].append(event)
        if t > REQUESTS[-1][3] and not len(batch):
            return events, rows
    raise AssertionError("the batch never emptied")


def test_row_counts():
    assert row_counts(1) == [1] and row_counts(4) == [1, 2, 4] and row_counts(5) == [1, 2, 4, 8]
    assert row_counts(16) == [1, 2, 4, 8, 16]


def assert_compiled_equals_eager_and_alone(model, tok, atol: float) -> None:
    eager, _ = decode(model, tok, compile=False)
    compiled, rows = decode(model, tok, compile=True)
    assert {1, 2, 3, 4} <= set(rows)  # 3 rows stepped as 4
    for rid, prompt, kw, _ in REQUESTS:
        tokens, logprobs, reason = alone(model, tok, prompt, kw)
        assert [e.token_id for e in compiled[rid]] == [e.token_id for e in eager[rid]] == tokens, rid
        torch.testing.assert_close(torch.tensor([e.logprob for e in compiled[rid]]), logprobs, rtol=0, atol=atol)
        assert compiled[rid][-1].finish_reason == reason


def test_the_compiled_batch_decodes_as_the_eager_batch_and_as_each_request_alone(tok, model):
    assert_compiled_equals_eager_and_alone(model, tok, atol=1e-5)


def test_an_int8_weight_only_model_decodes_the_same_compiled_and_eager_batched_and_alone(tok, model):
    """seqlab's int8 kernel rounds each row's activations on their own: a request's tokens do not depend on
    the rows beside it, nor on the padding rows of the compiled sizes."""
    import copy

    from seqlab.compress.quantize import quantize_model

    int8 = copy.deepcopy(model)
    quantize_model(int8, "weight-only")
    assert_compiled_equals_eager_and_alone(int8, tok, atol=1e-4)


def test_warm_up_compiles_every_size_once(model, monkeypatch):
    step = BucketedStep(model, max_batch=3)
    calls = []
    real = step._step

    def spy(R):
        calls.append(R)
        return real(R)

    monkeypatch.setattr(step, "_step", spy)
    step.warm_up()
    assert calls == [1, 1, 2, 2, 4, 4] and sorted(step._steps) == [1, 2, 4]
    assert not step.eager and all(s.calls == 2 and s.first_step_seconds is not None for s in step._steps.values())
    assert INDUCTOR_OPTIONS["freezing"]


def test_fit_moves_a_prefill_into_the_whole_context(tok, model):
    step = BucketedStep(model, max_batch=2)
    prompts = torch.tensor([tok.encode("the quick"), tok.encode("lazy dogs")])
    with torch.no_grad():
        _, state = model.prefill(prompts, None, 3)
        _, fitted = model.prefill(prompts, None, 3)
        step.fit(fitted)
        assert fitted.key_valid.shape == (2, model.max_length) and fitted.cache.storage[0].shape[0] == 2
        token = torch.tensor([3, 4])
        torch.testing.assert_close(model.step(token, fitted)[0], model.step(token, state)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "seq2seq_transformer"])
def test_a_model_that_cannot_be_compiled_steps_eagerly(tok, kind):
    model = build(kind, tok)
    batch = ContinuousBatch(model, tok, max_batch=2, compile=True)
    assert not batch.step_fn.compiled
    batch.warm_up()  # nothing to compile
    batch.add("a", tok.encode("the"), options(tok, max_new_tokens=5))
    tokens = [e.token_id for _ in range(5) for e in batch.step()]
    assert tokens == alone(model, tok, "the", dict(max_new_tokens=5))[0]


def test_rows_with_equal_options_and_lengths_share_one_choice(tok, model, monkeypatch):
    """min_new_tokens acts by the number of tokens: rows at the same point of it choose together."""
    calls = []
    choose = batching.choose

    def spy(logits, *args):
        calls.append(logits.shape[0])
        return choose(logits, *args)

    monkeypatch.setattr(batching, "choose", spy)
    batch = ContinuousBatch(model, tok, max_batch=4)
    kw = dict(max_new_tokens=6, min_new_tokens=3, do_sample=True)
    for i, prompt in enumerate(["the", "a lazy", "dog"]):
        batch.add(i, tok.encode(prompt), options(tok, seed=i, **kw))
    batch.step()
    batch.add(3, tok.encode("fox"), options(tok, seed=3, **kw))
    steps = []
    while len(batch):
        calls.clear()
        batch.step()
        steps.append(sorted(calls))
    # rows 0-2 have made 1 token, the new row none: EOS is blocked in all four, which choose together; once rows
    # 0-2 have 3 tokens (EOS allowed) and row 3 has 2, they choose apart
    assert steps[0] == [4] and [1, 3] in steps
