"""The continuous-batching worker in-process: a request's tokens are its tokens alone, however busy the batch;
a cancelled request leaves within one step; concurrent requests share decode steps; the queue is bounded;
every reply passes through the model's reply policy, pushed a piece at a time; beam search runs between steps.
Then the same through a live server: the policy's actions, /health's batch size, streamed log-probs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil

import pytest
import torch
from tiny_runs import (
    LINES,
    LM,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    train_run,
    write_text_corpus,
)

from seqlab.decode import build_prompt_ids, generate, stream
from seqlab.decode.bucketed import BucketedStep
from seqlab.errors import SeqlabError
from seqlab.runs import RunDir
from seqlab.safety.policy import ReplyPolicy
from seqlab.serve import load_models
from seqlab.serve.generation import GenerationRequest
from seqlab.serve.worker import BatchWorker, QueueFull

pytest_plugins = ["live_server"]  # the live tests' runs and servers (tests/serve/live_server.py)

RNN_LM = {"arch": "rnn_lm", "cell": "gru", "n_layer": 1, "n_embd": 16, "hidden_size": 16}
PROMPTS = {"lm": "to be", "rnn": "the king"}
LOGPROB_TOLERANCE = dict(rtol=0, atol=1e-5)  # a row's logits in a batch differ from alone by float rounding


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


@pytest.fixture(scope="module")
def king(tmp_path_factory):
    """A char Transformer LM that often says "king" (a second of training): greedy, "to be" goes on
    " that is the king", "long live the " goes on "king\\nthe king"."""
    root = tmp_path_factory.mktemp("king")
    corpus = write_text_corpus(root / "t.txt", LINES + ["long live the king", "the king is here"])
    run = train_run(root / "run", config_for(corpus, LM, "lm", tokenizer="char", max_steps=150, lr=1e-2,
                                             warmup_steps=5))
    (served,) = load_models([run], device="cpu").values()
    served.worker.close()
    return served


@contextlib.contextmanager
def worker_for(served, policy=None, **limits):
    worker = BatchWorker(served.model, served.tokenizer, policy or ReplyPolicy(), **{"max_batch": 8, **limits})
    try:
        yield worker
    finally:
        worker.close()


def sampling(served, seed, **changes):
    return served.options(**{"do_sample": True, "temperature": 1.0, "max_new_tokens": 12, "seed": seed, **changes})


async def collect(submission):
    """{choice: text}, {choice: its final event}, {choice: the pieces}, {choice: [(token id, log-prob)]}."""
    texts, ends, pieces, tokens = {}, {}, {}, {}
    async for event in submission:
        assert event.error is None, event.error
        texts[event.index] = texts.get(event.index, "") + event.text
        pieces.setdefault(event.index, []).append(event.text)
        tokens.setdefault(event.index, []).extend(zip(event.token_ids or [], event.token_logprobs or [], strict=True))
        if event.final:
            ends[event.index] = event
    return texts, ends, pieces, tokens


def run(coroutine):
    return asyncio.run(coroutine)


def generated_alone(served, prompt, options):
    """(token ids, their log-probs) of `generate()` for the request by itself."""
    ids = build_prompt_ids(served.tokenizer, prompt)
    out = generate(served.model, torch.tensor([ids]), tokenizer=served.tokenizer, **dataclasses.asdict(options))
    length = int(out.lengths[0])
    return out.sequences[0, len(ids):len(ids) + length].tolist(), out.token_logprobs[0, :length].tolist()


def assert_same_tokens(got, expected):
    ids, logprobs = expected
    assert [t for t, _ in got] == ids
    torch.testing.assert_close(torch.tensor([lp for _, lp in got]), torch.tensor(logprobs), **LOGPROB_TOLERANCE)


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("kind", ["lm", "rnn"])
@pytest.mark.parametrize("strategy", [{"do_sample": False}, {"do_sample": True, "temperature": 1.0, "seed": 7}],
                         ids=["greedy", "seeded-sampling"])
def test_a_requests_tokens_are_its_tokens_alone_in_a_busy_batch(models, kind, strategy, compile_step):
    """Rows of other prompts, lengths and options run beside it, some joining mid-way: the tokens are
    generate()'s for the request alone, the log-probs equal up to float rounding. With compile_step the
    Transformer's rows step through the graphs compiled for 1, 2, 4, 8 rows (the RNN steps eagerly)."""
    served = models[kind]
    options = served.options(max_new_tokens=16, min_new_tokens=16, **strategy)
    request = GenerationRequest(PROMPTS[kind], [options], token_ids=True)
    first = [GenerationRequest(p, [sampling(served, s, top_k=k, max_new_tokens=m)], token_ids=True)
             for p, s, k, m in [("all the", 1, 5, 20), ("now", 2, 0, 6), ("the", 3, 20, 9)]]
    later = [GenerationRequest(p, [served.options(max_new_tokens=m, repetition_penalty=1.3)], token_ids=True)
             for p, m in [("the king is", 12), ("to", 3), ("all the world is", 14)]]

    async def busy(worker):
        submissions = [worker.submit(r) for r in [first[0], request, *first[1:]]]
        mine = asyncio.ensure_future(collect(submissions[1]))
        for _ in range(4):
            await anext(submissions[0])  # the batch is running: more requests join it
        joined = [worker.submit(r) for r in later]
        await asyncio.gather(collect(submissions[0]), *map(collect, submissions[2:] + joined))
        return await mine

    with worker_for(served, compile_step=compile_step) as worker:
        texts, ends, _, tokens = run(busy(worker))
        assert worker.max_step_rows >= 4
        assert isinstance(worker.batch.step_fn, BucketedStep) == compile_step
        assert getattr(worker.batch.step_fn, "compiled", False) == (compile_step and kind == "lm")
    assert_same_tokens(tokens[0], generated_alone(served, PROMPTS[kind], options))
    assert ends[0].completion_tokens == 16 and ends[0].finish_reason == "length"
    # and the text is that of the one streaming generator `seqlab generate --stream` prints
    assert texts[0] == "".join(stream(served.model, served.tokenizer, PROMPTS[kind], **dataclasses.asdict(options)))


def test_each_event_carries_the_tokens_of_its_text(models):
    served = models["lm"]  # characters: a token is a character, EOS and padding decode to nothing

    async def main():
        request = GenerationRequest("to", [sampling(served, 5, max_new_tokens=20)], token_ids=True)
        return [event async for event in served.worker.submit(request)]

    events = run(main())
    assert len(events) > 5
    for event in events:
        assert served.tokenizer.decode(event.token_ids) == event.text
    assert sum(len(e.token_ids) for e in events) == events[-1].completion_tokens


def test_a_cancelled_request_leaves_the_batch_within_one_step(models):
    served = models["rnn"]
    endless = served.options(max_new_tokens=50_000, min_new_tokens=50_000)
    rows_after_cancel = []

    async def main(worker):
        leaving, staying = (worker.submit(GenerationRequest("the", [endless])) for _ in range(2))
        for _ in range(4):
            await anext(leaving)
            await anext(staying)
        assert worker.active_slots == 2
        step = worker.batch.step

        def recorded_step():
            if leaving.cancelled.is_set():
                rows_after_cancel.append(len(worker.batch))
            return step()

        worker.batch.step = recorded_step
        leaving.cancel()
        while len(rows_after_cancel) < 3:
            await anext(staying)
        assert worker.active_slots == 1
        staying.cancel()

    with worker_for(served) as worker:
        run(main(worker))
    # a step may have begun as the client left; every later one runs without its row
    assert rows_after_cancel.count(2) <= 1 and rows_after_cancel[-2:] == [1, 1]


def test_16_concurrent_requests_share_their_decode_steps(models):
    served = models["lm"]
    requests = [GenerationRequest("to be", [sampling(served, s, max_new_tokens=24, min_new_tokens=24)])
                for s in range(16)]

    async def main(worker):
        return await asyncio.gather(*(collect(worker.submit(r)) for r in requests))

    with worker_for(served, max_batch=16) as worker:
        results = run(main(worker))
        assert worker.max_step_rows == 16  # every request in one step: batched, not taking turns
        assert worker.steps < 2 * 24  # 16 x 24 tokens in fewer steps than two requests one after another
    assert all(ends[0].completion_tokens == 24 for _, ends, _, _ in results)


def test_a_burst_into_an_idle_worker_prefills_together(models, monkeypatch):
    """Requests arriving a millisecond apart into an idle worker (a burst of clients) join one prefill, not a
    first one alone and the rest one step later. (The quiet time is stretched, so a slow machine's gaps fit.)"""
    monkeypatch.setattr("seqlab.serve.worker.GATHER_QUIET_SECONDS", 0.05)
    served = models["lm"]
    requests = [GenerationRequest("to be", [sampling(served, s, max_new_tokens=4, min_new_tokens=4)]) for s in range(6)]

    async def main(worker):
        submissions = []
        for request in requests:
            submissions.append(worker.submit(request))
            await asyncio.sleep(0.001)
        return await asyncio.gather(*(collect(s) for s in submissions))

    with worker_for(served, max_batch=8) as worker:
        joined, step = [], worker.batch.step

        def counting_step():
            joined.append(len(worker.batch.joining))
            return step()

        worker.batch.step = counting_step
        results = run(main(worker))
    assert joined[0] == 6 and all(ends[0].completion_tokens == 4 for _, ends, _, _ in results)


def test_the_queue_is_bounded_and_a_waiting_request_can_leave_it(models):
    served = models["rnn"]
    endless = served.options(max_new_tokens=50_000, min_new_tokens=50_000)

    async def main(worker):
        active = worker.submit(GenerationRequest("the", [endless]))
        await anext(active)
        waiting = worker.submit(GenerationRequest("the", [endless]))
        assert (worker.active_slots, worker.queue_depth) == (1, 1)
        with pytest.raises(QueueFull):
            worker.submit(GenerationRequest("the", [endless]))
        waiting.cancel()
        assert worker.queue_depth == 0
        active.cancel()

    with worker_for(served, max_batch=1, max_queue=1) as worker:
        run(main(worker))


def test_more_choices_than_slots_start_as_slots_free_up(models):
    served = models["lm"]  # max_batch 4

    async def main(*seeds):
        return await collect(served.worker.submit(GenerationRequest("to", [sampling(served, s) for s in seeds])))

    texts, ends, _, _ = run(main(*range(6)))
    assert sorted(ends) == list(range(6))
    assert [texts[0], texts[5]] == [run(main(0))[0][0], run(main(5))[0][0]]  # each its own, whenever it started


def test_an_engine_error_ends_the_request_and_only_it(models):
    served = models["rnn"]
    too_many = served.options(max_new_tokens=10**9)  # more than a recurrent model generates in one call

    async def main():
        bad = served.worker.submit(GenerationRequest("the", [too_many]))
        good = served.worker.submit(GenerationRequest("the", [served.options(max_new_tokens=3)]))
        return [event async for event in bad], await collect(good)

    bad_events, (texts, ends, _, _) = run(main())
    assert len(bad_events) == 1 and isinstance(bad_events[0].error, SeqlabError)
    assert "max_new_tokens" in str(bad_events[0].error)
    assert ends[0].completion_tokens == 3


def test_a_bug_inside_a_step_ends_the_batchs_requests_and_the_worker_goes_on(models):
    served = models["rnn"]

    async def main(worker):
        running = worker.submit(GenerationRequest("the", [served.options(max_new_tokens=50, min_new_tokens=50)]))
        await anext(running)
        step = worker.batch.step

        def broken():
            worker.batch.step = step
            raise RuntimeError("a bug")

        worker.batch.step = broken
        events = [event async for event in running]
        after = await collect(worker.submit(GenerationRequest("the", [served.options(max_new_tokens=3)])))
        return events, after

    with worker_for(served) as worker:
        events, (_, ends, _, _) = run(main(worker))
        assert worker.active_slots == 0
    assert isinstance(events[-1].error, RuntimeError)
    assert ends[0].completion_tokens == 3


def test_beam_search_runs_between_steps_and_answers_as_generate(models):
    served = models["lm"]
    beams = served.options(num_beams=3, max_new_tokens=10)

    async def main():
        others = [served.worker.submit(GenerationRequest("all the", [sampling(served, s)])) for s in range(2)]
        beam = served.worker.submit(GenerationRequest("to be", [beams], token_ids=True))
        return (await asyncio.gather(collect(beam), *map(collect, others)))[0]

    texts, ends, _, tokens = run(main())
    assert_same_tokens(tokens[0], generated_alone(served, "to be", beams))
    assert texts[0] == "".join(stream(served.model, served.tokenizer, "to be", **dataclasses.asdict(beams)))


def test_bad_limits_are_a_seqlab_error(models):
    with pytest.raises(SeqlabError, match="--max-batch"):
        BatchWorker(models["lm"].model, models["lm"].tokenizer, ReplyPolicy(), max_batch=0)


# ---------------------------------------------------------------- the reply policy, pushed


def test_the_runs_fallback_applies_to_every_reply(models):
    """chat.fallback.threshold 0: every reply is less sure than that, so the fallback answers."""
    served = models["unsure"]

    async def main():
        return await collect(served.worker.submit(GenerationRequest("to be", [served.options(max_new_tokens=5)])))

    texts, ends, _, _ = run(main())
    assert texts == {0: "I am not sure."} and ends[0].finish_reason == "stop"
    assert ends[0].completion_tokens >= 1  # the tokens generated still count


def pull(king, policy, prompt, options):
    """The pull version's reply (seqlab generate and chat): pieces and Reply."""
    replies = policy.stream(king.model, king.tokenizer, prompt, **dataclasses.asdict(options))
    return list(replies), replies.reply


def test_mask_never_sends_part_of_a_listed_word(king):
    policy = ReplyPolicy("words", "mask", extra_words=["king"])
    options = king.options(max_new_tokens=30)
    unfiltered = "".join(stream(king.model, king.tokenizer, "long live the ", **dataclasses.asdict(options)))
    assert unfiltered.count("king") >= 2

    async def main(worker):
        other = worker.submit(GenerationRequest("to be", [sampling(king, 3, max_new_tokens=30)]))
        return (await asyncio.gather(collect(worker.submit(GenerationRequest("long live the ", [options]))),
                                     collect(other)))[0]

    with worker_for(king, policy) as worker:
        texts, ends, pieces, _ = run(main(worker))
    assert texts[0] == policy.words.mask(unfiltered) and "king" not in texts[0]
    assert len(pieces[0]) > 5  # streamed as it was decoded, a character a step
    for piece in pieces[0]:  # a listed word goes out as its four asterisks, in one piece, or not at all
        assert piece.count("*") % 4 == 0 and not piece.rstrip("*").endswith(("k", "ki", "kin"))


@pytest.mark.parametrize("strategy", [{"do_sample": False}, {"do_sample": True, "temperature": 1.0, "seed": 3}],
                         ids=["greedy", "seeded-sampling"])
def test_regenerate_in_the_batch_gives_the_pull_versions_reply(king, strategy):
    """The first generation says "king": its text before the word is sent, the retry (a new row, "king" banned,
    the same seed) repeats it, and the stream goes on after it; pieces as `ReplyPolicy.stream` gives them."""
    policy = ReplyPolicy("words", "regenerate", extra_words=["king"])
    options = king.options(max_new_tokens=30, **strategy)
    prompt = "to be" if not strategy["do_sample"] else "all the"
    pieces, reply = pull(king, policy, prompt, options)
    assert reply.flagged and reply.action_taken in ("regenerated", "refused")

    async def main(worker):
        others = [worker.submit(GenerationRequest("the", [sampling(king, s, max_new_tokens=30)])) for s in range(3)]
        mine = worker.submit(GenerationRequest(prompt, [options], token_ids=True))
        return (await asyncio.gather(collect(mine), *map(collect, others)))[0]

    with worker_for(king, policy) as worker:
        texts, ends, streamed, tokens = run(main(worker))
    assert texts[0] == reply.text and policy.words.find(texts[0]) == []
    assert "".join(streamed[0]) == "".join(pieces) and streamed[0][0] == pieces[0]
    assert ends[0].finish_reason == reply.finish_reason
    if reply.action_taken == "regenerated":  # the tokens sent are the last generation's, none twice
        banned = dataclasses.replace(options, banned_words=["king"] * (reply.tries - 1))
        assert_same_tokens(tokens[0], generated_alone(king, prompt, banned))
        assert ends[0].completion_tokens > len(tokens[0])  # the first generation's count too


def test_refuse_sends_only_the_refusal(king):
    policy = ReplyPolicy("words", "refuse", extra_words=["king"], refusal="No.")

    async def main(worker):
        refused = worker.submit(GenerationRequest("long live the ", [king.options(max_new_tokens=30)]))
        clean = worker.submit(GenerationRequest("all the", [king.options(max_new_tokens=8)]))
        return await asyncio.gather(collect(refused), collect(clean))

    with worker_for(king, policy) as worker:
        (texts, ends, pieces, _), (clean, _, _, _) = run(main(worker))
    assert pieces[0] == ["No."] and ends[0].finish_reason == "content_filter"
    assert clean[0] == "".join(stream(king.model, king.tokenizer, "all the", max_new_tokens=8,
                                      eos_token_id=king.tokenizer.eos_id))


# ---------------------------------------------------------------- through a live server


def guarded_run(root, chatbot, name, safety=None, fallback=None):
    """A copy of the chatbot run with its `safety` and `chat.fallback` config changed."""
    shutil.copytree(chatbot, root / name)
    run_dir = RunDir(root / name)
    config = run_dir.read_config()
    chat = dataclasses.replace(config.chat, fallback=dataclasses.replace(config.chat.fallback, **(fallback or {})))
    run_dir.write_config(dataclasses.replace(config, safety=dataclasses.replace(config.safety, **(safety or {})),
                                             chat=chat))
    return root / name


@pytest.fixture(scope="module")
def guarded(serve_runs, launch, tmp_path_factory):
    """The trained chatbot four times, each with a policy: "fine" and "morning" are listed words."""
    root = tmp_path_factory.mktemp("guarded")
    words = root / "words.txt"
    words.write_text("fine\nmorning\n", encoding="utf-8")
    listed = {"filter": "words", "words": str(words)}
    runs = [guarded_run(root, serve_runs["chatbot"], "mask", {**listed, "action": "mask"}),
            guarded_run(root, serve_runs["chatbot"], "regenerate", {**listed, "action": "regenerate"}),
            guarded_run(root, serve_runs["chatbot"], "refuse", {**listed, "action": "refuse", "refusal": "No."}),
            guarded_run(root, serve_runs["chatbot"], "unsure", fallback={"threshold": 0.0, "reply": "Not sure."})]
    server = launch(runs, "--max-batch", "8")
    yield server
    server.stop()


def chat_both_ways(server, model, user):
    """(whole reply, finish_reason, usage), and the streamed pieces and finish_reason, of one greedy chat."""
    client, messages = server.client(), [{"role": "user", "content": user}]
    whole = client.chat.completions.create(model=model, messages=messages, temperature=0)
    chunks = list(client.chat.completions.create(model=model, messages=messages, temperature=0, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    ends = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    choice = whole.choices[0]
    return (choice.message.content, choice.finish_reason, whole.usage), (pieces, ends)


@pytest.mark.slow
@pytest.mark.parametrize("model,user,reply,finish_reason", [
    ("mask", "good morning", "good ******* to you", "stop"),
    ("mask", "hello", "hi there", "stop"),
    ("refuse", "how are you", "No.", "content_filter"),
    ("refuse", "bye", "see you later", "stop"),
    ("unsure", "hello", "Not sure.", "stop"),
])
def test_the_policy_applies_to_every_reply_streamed_or_not(guarded, model, user, reply, finish_reason):
    (text, finish, _), (pieces, ends) = chat_both_ways(guarded, model, user)
    assert (text, finish) == (reply, finish_reason)
    assert "".join(pieces) == reply and ends == [finish_reason]


@pytest.mark.slow
def test_regenerate_through_the_server_bans_the_word_and_goes_on(guarded):
    (text, finish, usage), (pieces, ends) = chat_both_ways(guarded, "regenerate", "how are you")  # "i am fine"
    assert text.startswith("i am") and "fine" not in text
    assert "".join(pieces) == text and ends == [finish]
    assert usage.completion_tokens > len(text.split()) + 1  # the first generation's tokens count too


@pytest.mark.slow
def test_16_streams_at_once_run_in_one_decode_step(server):
    """16 slow streams (each would run for minutes), all started before any is read further: /health then
    reports a step of 16 rows. The clients leave and the slots are freed."""
    import httpx

    body = {"model": "slow", "messages": [{"role": "user", "content": "hello"}], "stream": True, "temperature": 1.0}

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http, contextlib.AsyncExitStack() as stack:
            streams = await asyncio.gather(*(stack.enter_async_context(http.stream("POST", "/v1/chat/completions",
                                                                                   json=body)) for _ in range(16)))
            lines = [s.aiter_lines() for s in streams]
            for _ in range(3):  # every stream is running: a few more lines from each
                await asyncio.gather(*(anext(line) for line in lines))
            return await asyncio.to_thread(server.health)

    health = run(main())["models"]["slow"]
    assert health["max_step_rows"] == 16
    assert server.wait_idle("slow") == {"active_slots": 0, "queue_depth": 0}


@pytest.mark.slow
@pytest.mark.parametrize("route", ["completions", "chat"])
def test_streamed_logprobs_are_the_whole_responses(server, route):
    """Each chunk carries its tokens' log-probs and alternatives; joined, they are the whole response's."""
    client = server.client()
    if route == "completions":
        kwargs = dict(model="lm", prompt="to be", max_tokens=16, temperature=1.0, seed=9, logprobs=2)
        whole = client.completions.create(**kwargs).choices[0].logprobs
        chunks = list(client.completions.create(**kwargs, stream=True))
        streamed = [(t, lp, top) for c in chunks for ch in c.choices if ch.logprobs
                    for t, lp, top in zip(ch.logprobs.tokens, ch.logprobs.token_logprobs, ch.logprobs.top_logprobs,
                                          strict=True)]
        assert streamed == list(zip(whole.tokens, whole.token_logprobs, whole.top_logprobs, strict=True))
        offsets = [o for c in chunks for ch in c.choices if ch.logprobs for o in ch.logprobs.text_offset]
        assert offsets == whole.text_offset
        with_text = [ch for c in chunks for ch in c.choices if ch.text]
    else:
        kwargs = dict(model="chatbot", messages=[{"role": "user", "content": "bye"}], temperature=0, logprobs=True,
                      top_logprobs=2)
        whole = client.chat.completions.create(**kwargs).choices[0].logprobs.content
        chunks = list(client.chat.completions.create(**kwargs, stream=True))
        streamed = [t for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.content]
        assert [t.model_dump() for t in streamed] == [t.model_dump() for t in whole]
        assert [t.token for t in whole] == ["see", " you", " later", "<eos>"]
        with_text = [ch for c in chunks for ch in c.choices if ch.delta.content]
    assert len(with_text) > 1 and all(ch.logprobs for ch in with_text)  # streamed as decoded, not in one piece
