"""A live `seqlab serve` for the tests: tiny runs built once, the server a subprocess on 127.0.0.1.

    pytest_plugins = ["live_server"]              # in a test module: its fixtures, one instance per session
    def test_something(server):                   # lm, chatbot and slow; --max-batch 16 --max-queue 64
        server.client().chat.completions.create(model="chatbot", messages=[...])
    def test_other(launch, serve_runs):           # a server of its own
        live = launch([serve_runs["lm"]], "--api-key", "k", api_key="k")

The runs (`serve_runs`): `lm`, a fresh character-level Transformer LM (context 32); `chatbot`, a GRU
chatbot trained until it knows its exchanges by heart, a Chinese one among them (about 8 s); `slow`, a
fresh GRU chatbot whose config asks for 20,000 tokens and no EOS before them, so that its streams last
long enough to be interrupted (a chatbot: an LM's chat reply ends at its first line break). The chatbot's exchanges are tiny_runs.PAIRS and ("你好", "你好呀 朋友").
Test modules take everything from fixtures and import nothing from here: this module is a plugin rather than a conftest.py, so that every
module shares one server: a second `conftest` module would hide the root one that `from conftest
import ...` reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from conftest import wait_while_running
from tiny_runs import (
    LM,
    PAIRS,
    SEQ2SEQ,
    config_for,
    make_run,
    train_run,
    write_pairs_corpus,
    write_text_corpus,
)

CHINESE_PAIR = ("你好", "你好呀 朋友")  # one more exchange for the chatbot
SLOW_TOKENS = 20_000
STARTED = re.compile(r"seqlab serve: (http://\S+?)/? ")


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen
    log: Path  # the server's stderr
    api_key: str | None = None

    def http(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers, **kwargs)

    def client(self, **kwargs: Any) -> Any:
        """The official `openai` client, pointed at this server."""
        import openai

        options = {"base_url": f"{self.url}/v1", "api_key": self.api_key or "unused", "max_retries": 0, "timeout": 60}
        return openai.OpenAI(**{**options, **kwargs})

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def slots(self, model: str) -> dict[str, int]:
        """/health's active_slots and queue_depth for `model`."""
        state = self.health()["models"][model]
        return {"active_slots": state["active_slots"], "queue_depth": state["queue_depth"]}

    def wait_idle(self, model: str, timeout: float = 10) -> dict[str, int]:
        """`slots(model)` once it has no active slot and no waiting request (or after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.slots(model)
            if state == {"active_slots": 0, "queue_depth": 0} or time.monotonic() > deadline:
                return state
            time.sleep(0.02)

    def stop(self) -> None:
        stop_server(self.proc)

    def tracebacks(self) -> list[str]:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [block for block in text.split("Traceback")[1:]]


def build_runs(root: Path) -> dict[str, Path]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train fastest on one thread
    try:
        return _build_runs(root)
    finally:
        torch.set_num_threads(threads)


def _build_runs(root: Path) -> dict[str, Path]:
    lm = make_run(root / "lm", config_for(write_text_corpus(root / "lm.txt"), LM, "lm", tokenizer="char"))
    pairs = write_pairs_corpus(root / "pairs.jsonl", [*PAIRS, CHINESE_PAIR])
    chatbot = train_run(root / "chatbot", config_for(pairs, SEQ2SEQ, "pairs", max_steps=80, lr=3e-2, warmup_steps=5))
    slow_config = config_for(pairs, SEQ2SEQ, "pairs")
    slow_config["decode"].update(max_new_tokens=SLOW_TOKENS, min_new_tokens=SLOW_TOKENS)
    slow = make_run(root / "slow", slow_config)
    return {"lm": lm, "chatbot": chatbot, "slow": slow}


def start_server(runs: list[Path], *args: str, log: Path, env: dict[str, str] | None = None,
                 api_key: str | None = None) -> LiveServer:
    """`seqlab serve RUNS --port 0 ARGS` in a subprocess; returns once /health answers."""
    command = [sys.executable, "-m", "seqlab", "serve", *map(str, runs), "--port", "0", "--device", "cpu", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}  # tiny models: one thread is fastest
    with log.open("w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    found: list[str] = []

    def started() -> bool:
        found[:] = STARTED.findall(log.read_text(encoding="utf-8"))
        return bool(found)

    try:
        wait_while_running(proc, started, timeout=120, poll=0.05)
        server = LiveServer(found[0], proc, log, api_key)
        wait_while_running(proc, lambda: _answers(server), timeout=60, poll=0.05)
    except BaseException:
        stop_server(proc)
        raise AssertionError(f"seqlab serve did not start: {log.read_text(encoding='utf-8')}") from None
    return server


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(server: LiveServer) -> bool:
    try:
        return server.health()["status"] == "ok"
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory) -> dict[str, Path]:
    return build_runs(tmp_path_factory.mktemp("serve-runs"))


@pytest.fixture(scope="session")
def launch(tmp_path_factory):
    """`launch(runs, *args, env=..., api_key=...)`: a server of a test's own (stopped at the end if still running)."""
    started = []

    def start(runs: list[Path], *args: str, env: dict[str, str] | None = None, api_key: str | None = None):
        log = tmp_path_factory.mktemp("serve-log") / "stderr.txt"
        started.append(start_server(runs, *args, log=log, env=env, api_key=api_key))
        return started[-1]

    yield start
    for live in started:
        live.stop()


@pytest.fixture(scope="session")
def server(serve_runs, launch):
    """The open server: lm, chatbot and slow; 16 slots and 64 waiting requests per model."""
    return launch(list(serve_runs.values()), "--max-batch", "16", "--max-queue", "64")
