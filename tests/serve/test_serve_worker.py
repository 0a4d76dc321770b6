"""The v1 worker in-process: interleaved requests keep their own tokens, cancelled ones leave at the next turn,
the queue is bounded, and every reply passes through the model's reply policy."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from tiny_runs import (
    LM,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_text_corpus,
)

from seqlab.decode import stream
from seqlab.errors import SeqlabError
from seqlab.safety.policy import ReplyPolicy
from seqlab.serve import load_models
from seqlab.serve.generation import GenerationRequest
from seqlab.serve.worker import QueueFull, ThreadWorker

RNN_LM = {"arch": "rnn_lm", "cell": "gru", "n_layer": 1, "n_embd": 16, "hidden_size": 16}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker")
    lm_config = config_for(write_text_corpus(root / "lm.txt"), LM, "lm", tokenizer="char")
    fallback_config = {**lm_config, "chat": {"fallback": {"threshold": 0.0, "reply": "I am not sure."}}}
    return {"lm": make_run(root / "lm", lm_config), "unsure": make_run(root / "unsure", fallback_config),
            "rnn": make_run(root / "rnn", config_for(write_text_corpus(root / "rnn.txt"), RNN_LM, "lm"))}


@pytest.fixture(scope="module")
def models(runs):
    models = load_models(list(runs.values()), device="cpu", max_batch=4, max_queue=4)
    yield models
    for served in models.values():
        served.worker.close()


def sampling(served, seed, **changes):
    return served.options(do_sample=True, temperature=1.0, max_new_tokens=12, seed=seed, **changes)


async def collect(submission):
    texts, ends = {}, {}
    async for event in submission:
        assert event.error is None, event.error
        texts[event.index] = texts.get(event.index, "") + event.text
        if event.final:
            ends[event.index] = event
    return texts, ends


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_requests_text_does_not_depend_on_what_else_is_decoding(models):
    served = models["lm"]
    request = GenerationRequest("to be", [sampling(served, 7)])

    async def alone():
        return await collect(served.worker.submit(request))

    async def among_others():
        others = [GenerationRequest(p, [sampling(served, s, top_k=k)]) for p, s, k in
                  [("all the", 1, 5), ("now", 2, 0), ("the king", 3, 20)]]
        submissions = [served.worker.submit(r) for r in [others[0], request, *others[1:]]]
        return (await asyncio.gather(*map(collect, submissions)))[1]

    texts, ends = run(alone())
    assert run(among_others())[0] == texts
    # and it is the text of the one streaming generator that `seqlab generate --stream` prints
    options = dataclasses.asdict(sampling(served, 7))
    assert texts[0] == "".join(stream(served.model, served.tokenizer, "to be", **options))
    assert ends[0].completion_tokens == len(ends[0].token_logprobs) and ends[0].finish_reason in ("stop", "length")


def test_a_cancelled_request_leaves_its_slots_at_the_next_turn(models):
    served = models["rnn"]
    endless = served.options(max_new_tokens=50_000, min_new_tokens=50_000)

    async def main():
        submission = served.worker.submit(GenerationRequest("the", [endless, endless]))
        for _ in range(4):
            await anext(submission)
        assert served.worker.active_slots == 2
        submission.cancel()
        started = time.monotonic()
        while served.worker.active_slots:
            await asyncio.sleep(0.001)
        return time.monotonic() - started

    assert run(main()) < 0.5


def test_the_queue_is_bounded_and_a_waiting_request_can_leave_it(models):
    served = models["rnn"]
    worker = ThreadWorker(served.model, served.tokenizer, ReplyPolicy(), max_batch=1, max_queue=1, name="tiny")
    endless = served.options(max_new_tokens=50_000, min_new_tokens=50_000)

    async def main():
        active = worker.submit(GenerationRequest("the", [endless]))
        await anext(active)
        waiting = worker.submit(GenerationRequest("the", [endless]))
        assert (worker.active_slots, worker.queue_depth) == (1, 1)
        with pytest.raises(QueueFull):
            worker.submit(GenerationRequest("the", [endless]))
        waiting.cancel()
        assert worker.queue_depth == 0
        active.cancel()

    try:
        run(main())
    finally:
        worker.close()


def test_more_choices_than_slots_run_when_the_worker_is_free(models):
    served = models["lm"]  # max_batch 4

    async def main():
        return await collect(served.worker.submit(GenerationRequest("to", [sampling(served, s) for s in range(6)])))

    texts, ends = run(main())
    assert sorted(ends) == list(range(6))


def test_an_engine_error_ends_the_request_and_only_it(models):
    served = models["rnn"]
    too_many = served.options(max_new_tokens=10**9)  # more than a recurrent model generates in one call

    async def main():
        bad = served.worker.submit(GenerationRequest("the", [too_many]))
        good = served.worker.submit(GenerationRequest("the", [served.options(max_new_tokens=3)]))
        return [event async for event in bad], await collect(good)

    bad_events, (texts, ends) = run(main())
    assert len(bad_events) == 1 and isinstance(bad_events[0].error, SeqlabError)
    assert "max_new_tokens" in str(bad_events[0].error)
    assert ends[0].completion_tokens == 3


def test_the_runs_reply_policy_applies_to_every_reply(models):
    """chat.fallback.threshold 0: every reply is less sure than that, so the fallback answers."""
    served = models["unsure"]

    async def main():
        return await collect(served.worker.submit(GenerationRequest("to be", [served.options(max_new_tokens=5)])))

    texts, ends = run(main())
    assert texts == {0: "I am not sure."} and ends[0].finish_reason == "stop"
    assert ends[0].completion_tokens >= 1  # the tokens generated still count


def test_bad_limits_are_a_seqlab_error(models):
    with pytest.raises(SeqlabError, match="--max-batch"):
        ThreadWorker(None, None, ReplyPolicy(), max_batch=0)

