"""The official `openai` client against a live `seqlab serve`: completions and chat, streamed and not, n > 1,
stop strings, seeds, log-probs and exact usage counts."""

from __future__ import annotations

import pytest

from seqlab.data.tokenizers import load_tokenizer

pytest_plugins = ["live_server"]  # the session's runs and server (tests/serve/live_server.py)
pytestmark = pytest.mark.slow


def tokenizer_of(serve_runs, name):
    return load_tokenizer(serve_runs[name] / "tokenizer.json")


def streamed(chunks) -> tuple[dict[int, str], dict[int, str], object]:
    """{choice: text}, {choice: finish_reason} and the usage of a stream of chunks (chat or completions)."""
    texts, ends, usage = {}, {}, None
    for chunk in chunks:
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for choice in chunk.choices:
            piece = choice.delta.content if hasattr(choice, "delta") else choice.text
            texts[choice.index] = texts.get(choice.index, "") + (piece or "")
            if choice.finish_reason:
                ends[choice.index] = choice.finish_reason
    return texts, ends, usage


def test_models_lists_every_run_by_its_directory_name(server):
    models = server.client().models.list()
    assert sorted(m.id for m in models.data) == ["chatbot", "lm", "slow"]


@pytest.mark.parametrize("user,reply", [("hello", "hi there"), ("what is your name", "my name is bot"),
                                        ("你好", "你好呀 朋友")])
def test_chat_answers_as_the_chatbot_learnt(server, serve_runs, user, reply):
    response = server.client().chat.completions.create(model="chatbot", messages=[{"role": "user", "content": user}],
                                                       temperature=0)
    choice = response.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", reply, "stop")
    tok = tokenizer_of(serve_runs, "chatbot")
    assert response.usage.prompt_tokens == len(tok.encode(user))  # history_turns 1: the last turn only
    assert response.usage.completion_tokens == len(tok.encode(reply)) + 1  # and EOS
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_a_streamed_chat_is_the_same_reply_with_usage_last(server):
    chunks = list(server.client().chat.completions.create(
        model="chatbot", messages=[{"role": "user", "content": "good morning"}], temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts, ends, usage = streamed(chunks)
    assert texts == {0: "good morning to you"} and ends == {0: "stop"}
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4  # one chunk per word
    assert usage is chunks[-1].usage and (usage.prompt_tokens, usage.completion_tokens) == (2, 5)


def test_the_chatbot_sees_the_last_turn_only(server):
    """data.history_turns is 1: earlier turns do not change the reply."""
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "bye"},
                {"role": "assistant", "content": "see you later"}, {"role": "user", "content": "thank you"}]
    response = server.client().chat.completions.create(model="chatbot", messages=messages, temperature=0)
    assert response.choices[0].message.content == "you are welcome"


def test_a_completion_counts_its_prompt_and_its_tokens_exactly(server, serve_runs):
    tok = tokenizer_of(serve_runs, "lm")
    response = server.client().completions.create(model="lm", prompt="to be or", max_tokens=12, temperature=1.0,
                                                  seed=3, logprobs=0)
    choice = response.choices[0]
    assert response.usage.prompt_tokens == len(tok.encode("to be or"))
    tokens = choice.logprobs.tokens
    assert response.usage.completion_tokens == len(tokens) == len(choice.logprobs.token_logprobs)
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs)
    ids = [tok.token_to_id(t) for t in tokens]
    assert tok.decode(ids) == choice.text  # the tokens are exactly the text (specials decode to nothing)
    if choice.finish_reason == "length":
        assert len(tokens) == 12


def test_streamed_and_whole_completions_agree_on_text_and_usage(server):
    client = server.client()
    whole = client.completions.create(model="lm", prompt="all the", max_tokens=10, temperature=1.0, seed=11)
    texts, ends, usage = streamed(client.completions.create(
        model="lm", prompt="all the", max_tokens=10, temperature=1.0, seed=11, stream=True,
        stream_options={"include_usage": True}))
    assert texts == {0: whole.choices[0].text} and ends == {0: whole.choices[0].finish_reason}
    assert usage == whole.usage


def test_a_seed_reproduces_a_sampled_reply_and_n_gives_seed_plus_i(server):
    client = server.client()

    def texts(n, seed, **extra):
        response = client.completions.create(model="lm", prompt="now is", max_tokens=16, temperature=1.0, n=n,
                                             seed=seed, **extra)
        assert [c.index for c in response.choices] == list(range(n))
        return [c.text for c in response.choices]

    first, again = texts(1, 5), texts(1, 5)
    assert first == again
    three = texts(3, 5)
    assert three[0] == first[0] and three[1] == texts(1, 6)[0] and len(set(three)) == 3
    assert texts(3, 5, extra_body={"top_k": 5}) != three  # an extra option takes effect


def test_n_choices_stream_interleaved_and_match_the_whole_response(server):
    client = server.client()
    whole = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "to be"}], n=3, seed=2,
                                           temperature=1.0, max_tokens=8)
    texts, ends, usage = streamed(client.chat.completions.create(
        model="lm", messages=[{"role": "user", "content": "to be"}], n=3, seed=2, temperature=1.0, max_tokens=8,
        stream=True, stream_options={"include_usage": True}))
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert ends == {c.index: c.finish_reason for c in whole.choices}
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_a_stop_string_ends_the_text_before_it_streamed_or_not(server):
    client = server.client()
    messages = [{"role": "user", "content": "what is your name"}]  # "my name is bot"
    whole = client.chat.completions.create(model="chatbot", messages=messages, temperature=0, stop=["name is", "xyz"])
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == ("my ", "stop")
    chunks = list(client.chat.completions.create(model="chatbot", messages=messages, temperature=0, stop="name is",
                                                 stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == "my " and not any("name" in p for p in pieces)  # "name" was held back, then dropped
    assert streamed(chunks)[1] == {0: "stop"}


def test_a_stop_string_across_tokens_of_a_character_model(server):
    client = server.client()
    free = client.completions.create(model="lm", prompt="the", max_tokens=20, temperature=1.0, seed=4).choices[0].text
    stop = free[5:8]  # three characters: three tokens
    cut = client.completions.create(model="lm", prompt="the", max_tokens=20, temperature=1.0, seed=4, stop=stop)
    assert cut.choices[0].text == free[:free.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_chat_logprobs_are_each_tokens_log_probability(server):
    response = server.client().chat.completions.create(model="chatbot", messages=[{"role": "user", "content": "bye"}],
                                                       temperature=0, logprobs=True)
    content = response.choices[0].logprobs.content
    assert [t.token for t in content] == ["see", " you", " later", "<eos>"]
    assert len(content) == response.usage.completion_tokens
    assert all(-1.0 < t.logprob <= 0 for t in content)  # a trained chatbot is sure of its reply
    assert content[1].bytes == list(b" you")


def test_top_logprobs_are_the_likeliest_tokens_of_each_step(server):
    response = server.client().chat.completions.create(model="chatbot", messages=[{"role": "user", "content": "bye"}],
                                                       temperature=0, logprobs=True, top_logprobs=3)
    content = response.choices[0].logprobs.content
    assert [t.token for t in content] == ["see", " you", " later", "<eos>"]
    for token in content:  # greedy: the token chosen is the likeliest, with its own log-prob
        assert len(token.top_logprobs) == 3 and token.top_logprobs[0].token == token.token
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob, abs=1e-6)
        assert [t.logprob for t in token.top_logprobs] == sorted((t.logprob for t in token.top_logprobs), reverse=True)
        assert all(t.bytes == list(t.token.encode("utf-8")) for t in token.top_logprobs)
    completion = server.client().completions.create(model="lm", prompt="to be", max_tokens=6, temperature=1.0, seed=1,
                                                    logprobs=2).choices[0].logprobs
    assert len(completion.top_logprobs) == len(completion.tokens)
    assert all(len(top) <= 2 for top in completion.top_logprobs)  # {token: log-prob}: two, unless both decode alike
    for token, logprob, top in zip(completion.tokens, completion.token_logprobs, completion.top_logprobs, strict=True):
        assert logprob <= max(top.values()) + 1e-6 and (token not in top or top[token] == pytest.approx(logprob))


def test_beam_search_answers_whole(server):
    response = server.client().chat.completions.create(
        model="chatbot", messages=[{"role": "user", "content": "how are you"}], temperature=0,
        extra_body={"num_beams": 3})
    assert response.choices[0].message.content == "i am fine"
