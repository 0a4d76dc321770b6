"""The app in-process, over a scripted worker: the routes need only the `Worker` protocol, and the SSE stream's
error paths (an engine error or a bug mid-stream) still end with [DONE]."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from tiny_runs import (
    LM,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_text_corpus,
)

from seqlab.errors import SeqlabError
from seqlab.serve import create_app, load_models
from seqlab.serve.generation import Event, GenerationRequest
from seqlab.serve.worker import QueueFull, Submission


class ScriptedWorker:
    """A Worker that answers every request with the same events (the test's script)."""

    def __init__(self, script: list[Event], full: bool = False):
        self.script, self.full = script, full
        self.requests: list[GenerationRequest] = []
        self.cancelled = 0

    active_slots = 0
    queue_depth = 0
    max_step_rows = 0

    def submit(self, request: GenerationRequest) -> Submission:
        if self.full:
            raise QueueFull("scripted")
        self.requests.append(request)
        submission = Submission(request, asyncio.get_running_loop(), self._cancel)
        for event in self.script:
            submission.put(event)
        return submission

    def _cancel(self, submission: Submission) -> None:
        self.cancelled += 1

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    run = make_run(root / "lm", config_for(write_text_corpus(root / "lm.txt"), LM, "lm", tokenizer="char"))
    (model,) = load_models([run], device="cpu").values()
    model.worker.close()
    return model


def post(served, script, body, full=False):
    served.worker = worker = ScriptedWorker(script, full)

    async def main():
        transport = httpx.ASGITransport(app=create_app({"lm": served}))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post("/v1/completions", json={"model": "lm", "prompt": "to be", **body})

    return asyncio.run(main()), worker


def sse_data(response):
    return [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]


def test_the_request_reaches_the_worker_as_options_per_choice(served):
    response, worker = post(served, [Event(0, "ab"), Event(0, finish_reason="length", completion_tokens=2),
                                     Event(1, "c"), Event(1, finish_reason="stop", completion_tokens=1)],
                            {"n": 2, "seed": 40, "temperature": 0.5, "max_tokens": 2, "stop": "x"})
    assert response.status_code == 200
    body = response.json()
    assert [(c["text"], c["finish_reason"]) for c in body["choices"]] == [("ab", "length"), ("c", "stop")]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    (request,) = worker.requests
    assert request.prompt == "to be" and [o.seed for o in request.choices] == [40, 41]
    assert all(o.do_sample and o.temperature == 0.5 and o.max_new_tokens == 2 and o.stop_strings == ["x"]
               for o in request.choices)
    assert worker.cancelled == 1  # a finished request is let go too


def test_an_engine_error_mid_stream_is_an_error_event_then_done(served):
    response, worker = post(served, [Event(0, "to"), Event(0, error=SeqlabError("top_k went wrong"))],
                            {"stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response)
    assert data[-1] == "[DONE]"
    assert json.loads(data[0])["choices"][0]["text"] == "to"
    assert json.loads(data[1]) == {"error": {"message": "top_k went wrong", "type": "invalid_request_error",
                                             "param": "top_k", "code": "invalid_value"}}
    assert len(data) == 3  # no usage chunk after an error
    assert worker.cancelled == 1


def test_a_bug_mid_stream_is_a_server_error_event_then_done(served):
    response, _ = post(served, [Event(0, "to"), Event(0, error=RuntimeError("boom"))], {"stream": True})
    data = sse_data(response)
    assert json.loads(data[1])["error"]["type"] == "server_error" and data[-1] == "[DONE]"


def test_an_error_at_the_first_event_is_a_plain_response(served):
    client_error, _ = post(served, [Event(0, error=SeqlabError("prompt of 40 tokens does not fit"))], {"stream": True})
    assert client_error.status_code == 400 and client_error.json()["error"]["param"] == "prompt"
    bug, _ = post(served, [Event(0, error=KeyError("x"))], {"stream": True})
    assert bug.status_code == 500 and bug.json()["error"]["code"] == "server_error"


def test_a_full_queue_is_429(served):
    response, _ = post(served, [], {}, full=True)
    assert response.status_code == 429 and response.json()["error"]["code"] == "queue_full"
