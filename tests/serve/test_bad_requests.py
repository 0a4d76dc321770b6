"""Malformed requests against a live server: each is the right 4xx with OpenAI's error object, never a 500,
and the server goes on answering."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["live_server"]  # the session's runs and server (tests/serve/live_server.py)
pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hello"}]


def chat(**fields):
    return json.dumps({"model": "chatbot", "messages": USER, **fields})


def completion(**fields):
    return json.dumps({"model": "lm", "prompt": "to be", **fields})


# (route, body, status, param, code)
BAD = [
    (COMPLETIONS, "{", 400, None, "invalid_json"),
    (COMPLETIONS, "", 400, None, "invalid_json"),
    (COMPLETIONS, "[1, 2]", 400, None, "invalid_value"),
    (COMPLETIONS, b"{\"model\": \"lm\", \"prompt\": \"\xff\xfe\"}", 400, None, "invalid_json"),
    (COMPLETIONS, completion(frequency_penalty=0.5), 400, "frequency_penalty", "unknown_field"),
    (COMPLETIONS, json.dumps({"prompt": "to be"}), 400, "model", "missing_field"),
    (COMPLETIONS, json.dumps({"model": "lm"}), 400, "prompt", "missing_field"),
    (COMPLETIONS, completion(max_tokens=0), 400, "max_tokens", "invalid_value"),
    (COMPLETIONS, completion(max_tokens="5"), 400, "max_tokens", "invalid_value"),
    (COMPLETIONS, completion(max_tokens=2.5), 400, "max_tokens", "invalid_value"),
    (COMPLETIONS, completion(temperature=2.5), 400, "temperature", "invalid_value"),
    (COMPLETIONS, completion(temperature=-0.1), 400, "temperature", "invalid_value"),
    (COMPLETIONS, completion(top_p=1.5), 400, "top_p", "invalid_value"),
    (COMPLETIONS, completion(top_p=0), 400, "top_p", "invalid_value"),  # GenerationOptions: (0, 1]
    (COMPLETIONS, completion(n=0), 400, "n", "invalid_value"),
    (COMPLETIONS, completion(n=9), 400, "n", "invalid_value"),
    (COMPLETIONS, completion(stop=["a", "b", "c", "d", "e"]), 400, "stop", "invalid_value"),
    (COMPLETIONS, completion(stop=[""]), 400, "stop", "invalid_value"),
    (COMPLETIONS, completion(stop=[1]), 400, "stop", "invalid_value"),
    (COMPLETIONS, completion(seed=-1), 400, "seed", "invalid_value"),
    (COMPLETIONS, completion(seed=2**63), 400, "seed", "invalid_value"),
    (COMPLETIONS, completion(stream="yes"), 400, "stream", "invalid_value"),
    (COMPLETIONS, completion(stream_options={"include_usage": True}), 400, "stream_options", "invalid_value"),
    (COMPLETIONS, completion(stream=True, stream_options={"usage": True}), 400, "stream_options.usage",
     "unknown_field"),
    (COMPLETIONS, completion(logprobs=3, num_beams=2), 400, "logprobs", "not_supported"),
    (COMPLETIONS, completion(logprobs=6), 400, "logprobs", "invalid_value"),
    (COMPLETIONS, completion(top_k=-1), 400, "top_k", "invalid_value"),
    (COMPLETIONS, completion(min_p=2), 400, "min_p", "invalid_value"),
    (COMPLETIONS, completion(repetition_penalty=0), 400, "repetition_penalty", "invalid_value"),
    (COMPLETIONS, completion(num_beams=2, stream=True), 400, "num_beams", "invalid_value"),
    (COMPLETIONS, completion(num_beams=2, n=1, do_sample=True), 400, "do_sample", "unknown_field"),
    (COMPLETIONS, json.dumps({"model": "chatbot", "prompt": "hello"}), 400, "model", "model_not_supported"),
    (COMPLETIONS, json.dumps({"model": "gpt-4", "prompt": "hello"}), 404, "model", "model_not_found"),
    (CHAT, json.dumps({"model": "slow", "messages": USER, "max_tokens": 10**9, "stream": True}), 400, "max_tokens",
     "invalid_value"),  # found by the engine at its first step: still a 400, before any stream
    (CHAT, chat(messages=[]), 400, "messages", "invalid_value"),
    (CHAT, chat(messages=[{"role": "robot", "content": "hi"}]), 400, "messages[0].role", "invalid_value"),
    (CHAT, chat(messages=[{"role": "user"}]), 400, "messages[0].content", "missing_field"),
    (CHAT, chat(messages=[{"role": "user", "content": 5}]), 400, "messages[0].content", "invalid_value"),
    (CHAT, chat(messages=[*USER, {"role": "assistant", "content": "hi"}]), 400, "messages", "invalid_value"),
    (CHAT, chat(top_logprobs=2, logprobs=True, num_beams=3), 400, "top_logprobs", "not_supported"),
    (CHAT, chat(top_logprobs=2), 400, "top_logprobs", "invalid_value"),  # needs logprobs: true
    (CHAT, chat(top_logprobs=21, logprobs=True), 400, "top_logprobs", "invalid_value"),
    (CHAT, chat(max_tokens=4, max_completion_tokens=4), 400, "max_completion_tokens", "invalid_value"),
    (CHAT, json.dumps({"model": "chatbot", "messages": USER, "temperature": float("nan")}), 400, "temperature",
     "invalid_value"),
]


@pytest.mark.parametrize("route,body,status,param,code", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_a_bad_request_is_a_4xx_error_object(server, route, body, status, param, code):
    with server.http() as http:
        response = http.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == (param, code), error
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert error["message"] and "\n" not in error["message"] and "Traceback" not in error["message"]


def test_unknown_routes_and_methods(server):
    with server.http() as http:
        missing = http.get("/v1/engines")
        wrong_method = http.get(COMPLETIONS)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_one_megabyte_is_413(server, chunked):
    body = completion(prompt="a" * 1_100_000).encode()
    content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    with server.http() as http:
        response = http.post(COMPLETIONS, content=content)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert server.health()["status"] == "ok"


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_beyond_the_context_is_400_before_any_stream(server, stream):
    too_long = "to be or not to be that is the question"  # 39 characters; the LM's context is 32
    with server.http() as http:
        response = http.post(COMPLETIONS, json={"model": "lm", "prompt": too_long, "stream": stream})
        in_chat = http.post(CHAT, json={"model": "lm", "messages": [{"role": "user", "content": too_long}],
                                        "stream": stream})
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("prompt", "context_length_exceeded")
    assert "39 tokens" in error["message"] and "at most 31" in error["message"]
    assert in_chat.status_code == 400 and in_chat.json()["error"]["param"] == "messages"


def test_the_server_is_alive_and_logged_no_traceback(server):
    with server.http() as http:
        assert http.post(COMPLETIONS, content=completion(max_tokens=3)).status_code == 200
    assert server.tracebacks() == []
