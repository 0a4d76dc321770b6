"""Serving speed: `seqlab serve` against `transformers serve` on the same GPT-2 weights, through the openai client.

    python bench/serve.py                       # the issue's protocol: 1 and 16 clients, 64 tokens, seqlab, hf, hf-cb
    python bench/serve.py --clients 1,16 --max-tokens 64 --servers seqlab,hf,hf-cb
    python bench/serve.py --clients 1,2 --max-tokens 8 --requests 2 --rounds 1 --n-layer 1 --n-embd 32 --n-head 2  # a smoke run

The model: a GPT-2-shaped seqlab run (6 layers x 384, 6 heads, context 256, byte-level BPE with 2,000
tokens learnt on the `shakespeare` corpus) made by `seqlab train` with one step at lr 1e-9 (its
weights are the initialisation: random), then `seqlab export-hf` to a Hugging Face folder, so that both
servers decode the same weights with the same tokenizer. Nothing is downloaded (HF_HUB_OFFLINE=1).

Servers, each a subprocess on 127.0.0.1 (a free port; ready once GET /health answers), all started
first and stopped at the end however the bench ends, with OMP_NUM_THREADS = MKL_NUM_THREADS =
`--threads` (torch's CPU thread pools read them at start); an idle server uses no CPU:
    seqlab          `seqlab serve RUN --max-batch MAX_CLIENTS` (every client's request gets a slot at once)
    seqlab-compile  the same with `--compile`: the continuous batch steps through Inductor-compiled graphs
                    of 1, 2, 4, ... MAX_CLIENTS rows (seqlab.decode.bucketed), compiled before /health answers
    hf              `transformers serve --device cpu FOLDER` (FOLDER is its FORCE_MODEL, loaded at start)
    hf-cb           the same with `--continuous-batching`

The requests: POST /v1/completions, streamed, `max_tokens` = `--max-tokens`, temperature 1, top-p 1, no
top-k, the prompts of PROMPTS in turn. Every reply is made to reach `max_tokens`: seqlab's run has
`decode.min_new_tokens` = max_tokens in its config (a request's missing options come from there); HF's
requests carry the same options as the `generation_config` field `transformers serve` reads (without
it, the exported GPT-2's default would be greedy decoding). The tokens counted are each reply's `usage`
(`completion_tokens`); `tokens_min` / `tokens_max` show whether every reply had max_tokens.

One warm-up wave of MAX_CLIENTS concurrent requests per server (not measured: it pays for lazy
initialisation, e.g. HF's continuous-batching cache, seqlab's compile). Then, for each entry C of
`--clients`, `--rounds` rounds; a round measures every server in turn (in a new order each round), so
that the servers share the load of a shared machine: C concurrent clients (asyncio tasks sharing one
`AsyncOpenAI`), each sending ceil(`--requests` / C) requests one after another. `tok_s` = the tokens
of all replies / the wall time; `ttft` = from sending a request to its first chunk with text;
`stream_tok_s_p50` a reply's own tokens/s after its first chunk.

Output, JSON lines: one per server, C and round (`round`: 0, 1, ..., with the load average before and
after); then one per server and C over all rounds (`round`: "all"); then one per C and seqlab server
comparing it with the peers (`ratio_vs_P`: tokens/s over P's, `ratio_vs_P_round_median`, and
`ttft_p95_ratio_vs_P`: seqlab's TTFT p95 over P's), with the machine and the date. The one-line
summary goes to stderr. The bench's own client shares the CPU with the server it measures.

The servers' seqlab is the one this interpreter imports; `PYTHONPATH=CHECKOUT/src` serves another checkout's
(its path is `seqlab_src` in the lines). On a 2-core machine that runs other jobs, 2 threads per server
can be several times slower than 1 (transformers serve was 3x slower at the same minute, 2026-12-06):
compare with `--threads 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from openai import AsyncOpenAI

BIN = Path(sys.executable).parent  # the venv's seqlab and transformers commands
SERVERS = ("seqlab", "seqlab-compile", "hf", "hf-cb")
PEERS = ("hf", "hf-cb")
PROMPTS = [
    "ROMEO:\nBut soft, what light through yonder window breaks?",
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?",
    "HAMLET:\nTo be, or not to be, that is the question:",
    "KING RICHARD III:\nNow is the winter of our discontent",
    "MACBETH:\nIs this a dagger which I see before me,",
    "PORTIA:\nThe quality of mercy is not strain'd,",
    "JAQUES:\nAll the world's a stage,",
    "MARK ANTONY:\nFriends, Romans, countrymen, lend me your ears;",
    "PROSPERO:\nWe are such stuff as dreams are made on,",
    "LADY MACBETH:\nOut, damned spot! out, I say!",
    "KING LEAR:\nBlow, winds, and crack your cheeks! rage! blow!",
    "OTHELLO:\nIt is the cause, it is the cause, my soul,",
    "HENRY V:\nOnce more unto the breach, dear friends, once more;",
    "PUCK:\nIf we shadows have offended,",
    "VIOLA:\nIf music be the food of love, play on;",
    "BRUTUS:\nThere is a tide in the affairs of men,",
]


@dataclass
class Server:
    name: str
    url: str  # http://127.0.0.1:PORT
    model: str  # the `model` field its requests carry
    extra_body: dict  # fields beyond OpenAI's the requests need


@dataclass
class Reply:
    ttft: float | None  # seconds to the first chunk with text
    tokens: int  # usage.completion_tokens (0 if the server sent no usage)
    finish_reason: str | None
    start: float
    end: float
    error: str | None = None


def make_model(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The random-weight seqlab run and its Hugging Face export, made in `work` by seqlab's commands."""
    run, folder = work / "gpt2-bpe", work / "gpt2-bpe-hf"
    keys = {"data.corpus": "shakespeare", "data.tokenizer": "bpe", "data.vocab_size": args.vocab,
            "model.n_layer": args.n_layer, "model.n_head": args.n_head, "model.n_embd": args.n_embd,
            "model.context_length": 256, "model.positions": "learned", "model.activation": "gelu_new",
            "model.bias": "true", "model.tie_embeddings": "true",
            # one step that changes nothing: the weights stay the initialisation's
            "train.max_steps": 1, "train.lr": 1e-9, "train.min_lr": 0, "train.warmup_steps": 1,
            "train.batch_size": 2, "train.eval_batches": 1, "train.samples": 0,
            # what a request leaves out: sampling at temperature 1 over the whole vocabulary, max_tokens always reached
            "decode.do_sample": "true", "decode.temperature": 1.0, "decode.top_k": 0, "decode.top_p": 1.0,
            "decode.min_new_tokens": args.max_tokens}
    sets = [a for key, value in keys.items() for a in ("--set", f"{key}={value}")]
    seqlab([BIN / "seqlab", "train", "shakespeare-char-transformer-cpu", *sets, "--out", run], args.threads)
    seqlab([BIN / "seqlab", "export-hf", run, "--out", folder], args.threads)
    return run, folder


def seqlab(cmd: list, threads: int) -> None:
    """Run a seqlab command quietly; its stderr if it fails."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=server_env(threads))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd[:2]))} failed ({done.returncode}):\n{done.stderr.strip()}")


def server_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def server_command(name: str, run: Path, folder: Path, port: int, args: argparse.Namespace) -> tuple[list, str, dict]:
    """The command line of server `name`, the `model` its requests name, and their extra fields."""
    if name.startswith("seqlab"):
        cmd = [BIN / "seqlab", "serve", run, "--host", "127.0.0.1", "--port", port, "--device", "cpu",
               "--max-batch", max(args.clients)]
        return cmd + (["--compile"] if name == "seqlab-compile" else []), run.name, {}
    cmd = [BIN / "transformers", "serve", "--host", "127.0.0.1", "--port", port, "--device", "cpu", folder]
    options = {"max_new_tokens": args.max_tokens, "min_new_tokens": args.max_tokens, "do_sample": True,
               "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    extra = {"generation_config": json.dumps(options)}
    return cmd + (["--continuous-batching"] if name == "hf-cb" else []), str(folder), extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(name: str, run: Path, folder: Path, log: Path, args: argparse.Namespace) -> Iterator[Server]:
    """Server `name` started, ready (GET /health answers), and stopped (SIGTERM, then SIGKILL) however the block ends."""
    port = free_port()
    cmd, model, extra = server_command(name, run, folder, port, args)
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, env=server_env(args.threads))
    try:
        wait_ready(proc, url, log, args.start_timeout)
        yield Server(name, url, model, extra)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; its log ({log}) ends:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s; its log ({log}) ends:\n{tail(log)}")


def tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def one_request(client: AsyncOpenAI, server: Server, prompt: str, max_tokens: int) -> Reply:
    start = time.perf_counter()
    ttft, tokens, finish = None, 0, None
    try:
        stream = await client.completions.create(
            model=server.model, prompt=prompt, max_tokens=max_tokens, temperature=1.0, top_p=1.0, stream=True,
            stream_options={"include_usage": True}, extra_body=server.extra_body or None)
        async for chunk in stream:
            if chunk.choices:
                choice = chunk.choices[0]
                if choice.text and ttft is None:
                    ttft = time.perf_counter() - start
                finish = choice.finish_reason or finish
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
    except Exception as e:  # counted and reported; the bench goes on
        return Reply(ttft, tokens, finish, start, time.perf_counter(), error=f"{type(e).__name__}: {e}")
    return Reply(ttft, tokens, finish, start, time.perf_counter())


async def phase(server: Server, clients: int, per_client: int, max_tokens: int) -> tuple[list[Reply], float]:
    """`clients` concurrent clients, each sending `per_client` requests in turn; the replies and the wall time."""
    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=900) as client:
        async def one_client(c: int) -> list[Reply]:
            return [await one_request(client, server, PROMPTS[(c + i * clients) % len(PROMPTS)], max_tokens)
                    for i in range(per_client)]

        start = time.perf_counter()
        replies = await asyncio.gather(*(one_client(c) for c in range(clients)))
        return [r for rs in replies for r in rs], time.perf_counter() - start


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class Phase:
    """One server's replies to `clients` concurrent clients in one round, with the load average around them."""

    server: str
    clients: int
    round: int
    replies: list[Reply]
    wall: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def measure(server: Server, clients: int, round_: int, args: argparse.Namespace) -> Phase:
    load_before = os.getloadavg()
    replies, wall = asyncio.run(phase(server, clients, math.ceil(args.requests / clients), args.max_tokens))
    return Phase(server.name, clients, round_, replies, wall, load_before, os.getloadavg())


def stats(phases: list[Phase]) -> dict:
    """Tokens/s (all replies' tokens over the phases' summed wall time), TTFT percentiles and the token counts."""
    replies = [r for p in phases for r in p.replies]
    ok = [r for r in replies if r.error is None]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    tokens = [r.tokens for r in ok]
    wall = sum(p.wall for p in phases)
    streams = [r.tokens / (r.end - r.start - r.ttft) for r in ok if r.ttft is not None and r.end - r.start > r.ttft]
    return {"requests": len(replies), "errors": len(replies) - len(ok),
            "first_error": next((r.error for r in replies if r.error), None), "tokens": sum(tokens),
            "tokens_min": min(tokens, default=0), "tokens_max": max(tokens, default=0),
            "finish_reasons": dict(Counter(r.finish_reason for r in ok)), "wall_s": round(wall, 2),
            "tok_s": round(sum(tokens) / wall, 1), "ttft_p50_s": rounded(percentile(ttfts, 50), 3),
            "ttft_p95_s": rounded(percentile(ttfts, 95), 3), "stream_tok_s_p50": rounded(percentile(streams, 50), 1)}


def round_line(phase: Phase) -> dict:
    return {"bench": "serve", "server": phase.server, "clients": phase.clients, "round": phase.round,
            **stats([phase]), "load_before": loads(phase.load_before), "load_after": loads(phase.load_after)}


def pooled_line(phases: list[Phase], args: argparse.Namespace) -> dict:
    ones = [x for p in phases for x in (p.load_before[0], p.load_after[0])]
    return {"bench": "serve", "server": phases[0].server, "clients": phases[0].clients, "round": "all",
            "max_tokens": args.max_tokens, **stats(phases), "load_1min_min_max": [round(min(ones), 2), round(max(ones), 2)]}


def comparisons(phases: dict[tuple[str, int], list[Phase]], pooled: dict[tuple[str, int], dict]) -> list[dict]:
    """Per client count and seqlab server: tokens/s and TTFT p95 against each peer's, and against the best peer.

    `ratio_vs_P` is pooled over the rounds; `ratio_vs_P_round_median` the median of the rounds' own
    ratios (each round measures every server in turn, so a ratio within a round compares like loads).
    """
    out = []
    for (name, clients), ours in pooled.items():
        peers = [pooled[p, clients] for p in PEERS if (p, clients) in pooled]
        if not name.startswith("seqlab") or not peers:
            continue
        line = {"bench": "serve", "compare": name, "clients": clients, "tok_s": ours["tok_s"],
                "ttft_p95_s": ours["ttft_p95_s"]}
        for peer in peers:
            other = peer["server"]
            line[f"{other}_tok_s"] = peer["tok_s"]
            line[f"ratio_vs_{other}"] = round(ours["tok_s"] / peer["tok_s"], 2)
            line[f"ratio_vs_{other}_round_median"] = round(statistics.median(
                stats([a])["tok_s"] / stats([b])["tok_s"]
                for a, b in zip(phases[name, clients], phases[other, clients], strict=True)), 2)
            line[f"{other}_ttft_p95_s"] = peer["ttft_p95_s"]
            if ours["ttft_p95_s"] and peer["ttft_p95_s"]:
                line[f"ttft_p95_ratio_vs_{other}"] = round(ours["ttft_p95_s"] / peer["ttft_p95_s"], 3)
        best = max(peers, key=lambda p: p["tok_s"])
        ones = [x for key in [(name, clients), *((p["server"], clients) for p in peers)]
                for ph in phases[key] for x in (ph.load_before[0], ph.load_after[0])]
        out.append(line | {"best_peer": best["server"], "ratio_vs_best_peer": round(ours["tok_s"] / best["tok_s"], 2),
                           "load_1min_min_max": [round(min(ones), 2), round(max(ones), 2)]})
    return out


def rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def loads(average: tuple[float, float, float]) -> list[float]:
    return [round(x, 2) for x in average]


def machine(args: argparse.Namespace) -> dict:
    import torch
    import transformers

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MZ"), "cpu": cpu,
            "cores": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "transformers": transformers.__version__, **seqlab_source(args.threads),
            "server_threads": args.threads, "rounds": args.rounds,
            "model": f"gpt2 {args.n_layer}x{args.n_embd}, {args.n_head} heads, bpe {args.vocab}, random weights"}


def seqlab_source(threads: int) -> dict:
    """Where the servers' seqlab comes from (PYTHONPATH can point it at another checkout's src/) and its commit."""
    where = subprocess.run([sys.executable, "-c", "import seqlab; print(seqlab.__file__)"], capture_output=True,
                           text=True, env=server_env(threads)).stdout.strip()
    package = Path(where).parent
    commit = subprocess.run(["git", "-C", package, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {"seqlab_src": str(package), "seqlab_commit": commit.stdout.strip() or None}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", default="seqlab,hf,hf-cb", help="comma-separated, of " + ", ".join(SERVERS))
    p.add_argument("--clients", default="1,16", help="concurrent streaming clients, comma-separated")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (each reply reaches it)")
    p.add_argument("--requests", type=int, default=16, help="requests per server and round, shared among the clients")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each measures every server in turn")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS of each server")
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--vocab", type=int, default=2000, help="BPE vocabulary size")
    p.add_argument("--start-timeout", type=float, default=300, help="seconds a server may take to answer /health")
    p.add_argument("--work", type=Path, default=None,
                   help="a new directory for the run, its export and the servers' logs (default: a temporary one)")
    args = p.parse_args()
    args.servers = args.servers.split(",")
    args.clients = [int(c) for c in args.clients.split(",")]
    unknown = sorted(set(args.servers) - set(SERVERS))
    if unknown:
        p.error(f"unknown servers {unknown}; choose from {', '.join(SERVERS)}")
    return args


def main() -> None:
    args = parse_args()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serve-")))
        work.mkdir(parents=True, exist_ok=True)
        run, folder = make_model(work, args)
        about = machine(args)
        servers = [stack.enter_context(running(name, run, folder, work / f"{name}.log", args)) for name in args.servers]
        for server in servers:  # warm-up, not measured
            asyncio.run(phase(server, max(args.clients), 1, args.max_tokens))
        phases: dict[tuple[str, int], list[Phase]] = {}
        for clients in args.clients:
            for round_ in range(args.rounds):
                for server in servers[round_ % len(servers):] + servers[:round_ % len(servers)]:  # a new order each round
                    measured = measure(server, clients, round_, args)
                    phases.setdefault((server.name, clients), []).append(measured)
                    print(json.dumps(round_line(measured) | {"date": about["date"]}), flush=True)
    pooled = {key: pooled_line(ps, args) for key, ps in phases.items()}
    for line in [*pooled.values(), *comparisons(phases, pooled)]:
        print(json.dumps(line | about), flush=True)
    summary = "; ".join(f"{r['server']} x{r['clients']}: {r['tok_s']:.0f} tok/s, TTFT p50/p95 {r['ttft_p50_s']}/"
                        f"{r['ttft_p95_s']} s" for r in pooled.values())
    print(f"serve, {args.max_tokens} tokens, {args.threads} threads, {args.rounds} rounds: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
