"""A server with an API key (from SEQLAB_API_KEY) and the smallest queue: 401 without the key, /health and the
page open; a full queue answers 429 and the server goes on."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

pytest_plugins = ["live_server"]  # the session's runs and server (tests/serve/live_server.py)
pytestmark = pytest.mark.slow

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def locked(serve_runs, launch):
    """lm and slow behind KEY, one slot and one waiting request per model."""
    server = launch([serve_runs["lm"], serve_runs["slow"]], "--max-batch", "1", "--max-queue", "1",
                    env={"SEQLAB_API_KEY": KEY}, api_key=KEY)
    yield server
    server.stop()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {KEY}", KEY, "Bearer"])
def test_without_the_key_every_api_route_is_401(locked, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for method, path, body in [("GET", "/v1/models", None), ("POST", "/v1/completions", "{not json"),
                               ("GET", "/v1/nowhere", None)]:
        response = httpx.request(method, f"{locked.url}{path}", headers=headers, content=body, timeout=10)
        assert response.status_code == 401, (path, response.text)  # before the body is read or the route found
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"


def test_health_and_the_page_need_no_key(locked):
    assert httpx.get(f"{locked.url}/health", timeout=10).json()["status"] == "ok"
    page = httpx.get(f"{locked.url}/", timeout=10)
    assert page.status_code == 200 and "seqlab chat" in page.text
    assert httpx.get(f"{locked.url}/static/app.js", timeout=10).status_code == 200


def test_the_openai_client_with_and_without_the_key(locked):
    import openai

    reply = locked.client().completions.create(model="lm", prompt="to be", max_tokens=3)
    assert reply.usage.completion_tokens >= 1
    with pytest.raises(openai.AuthenticationError):
        locked.client(api_key="not-the-key").models.list()


def test_a_full_queue_is_429_and_the_server_goes_on(locked):
    slow = {"model": "slow", "messages": [{"role": "user", "content": "hello"}], "stream": True}

    async def main():
        async with httpx.AsyncClient(base_url=locked.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as http:
            async with http.stream("POST", "/v1/chat/completions", json=slow) as active:
                assert active.status_code == 200  # its first event is there: it holds the one slot
                waiting = asyncio.create_task(http.post("/v1/chat/completions", json=slow))
                await until(lambda: locked.slots("slow") == {"active_slots": 1, "queue_depth": 1})
                full = await http.post("/v1/chat/completions", json=slow)
                other_model = await http.post("/v1/completions", json={"model": "lm", "prompt": "to", "max_tokens": 2})
                waiting.cancel()  # the waiting client leaves: its request leaves the queue
                await until(lambda: locked.health()["models"]["slow"]["queue_depth"] == 0)
            return full, other_model

    full, other_model = asyncio.run(main())
    assert full.status_code == 429 and full.headers["retry-after"] == "1"
    assert full.json()["error"] == {"message": full.json()["error"]["message"], "type": "rate_limit_error",
                                    "param": None, "code": "queue_full"}
    assert other_model.status_code == 200  # each model has its own queue
    assert locked.wait_idle("slow") == {"active_slots": 0, "queue_depth": 0}
    again = locked.client().chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=3)
    assert again.usage.completion_tokens == 3


async def until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
