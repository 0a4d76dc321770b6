"""Continuous batching: aggregate decode speed of `ContinuousBatch` against `generate()` one request at a time.

    python bench/batching.py                        # GPT-2-shaped 6 x 384, vocab 2,000, 2 CPU threads
    python bench/batching.py --n-layer 1 --n-embd 32 --n-head 2 --requests 4 --repeats 1   # a smoke run

A TransformerLM with random weights; each request is a prompt of 16 random tokens and 64 new tokens
(no EOS, so every request runs to max_new_tokens), decoded with its own seed; text pieces are made as
the server streams them (a byte-level BPE of 2,000 tokens trained on the docs). Each round decodes every
request three ways: alone through the batcher (1 request in flight) and alone through `generate()`,
interleaved request by request so that both see the same host load, then through the batcher with c
requests in flight (a closed loop: each finished request is replaced by the next, so requests join and
leave a running batch; the first c join at once). Tokens/s = requests x 64 / wall seconds; `speedup` is
the best round's batcher against the best round's generate(), `round_speedups` each round's own ratio
(the host's load drifts; their median is the robust figure). TTFT runs from `add` to the request's first
token, p50 / p95 over the requests of the best round. `same_tokens`: every request got the tokens
generate() gives it. One JSON line per mode and concurrency, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from seqlab.data.tokenizers import BPETokenizer
from seqlab.decode import GenerationOptions, generate
from seqlab.decode.batching import ContinuousBatch
from seqlab.models.transformer_lm import TransformerLM

MODES = {"greedy": dict(do_sample=False), "sample": dict(do_sample=True, top_k=50, top_p=0.9)}


def tokenizer(vocab: int) -> BPETokenizer:
    docs = Path(__file__).resolve().parents[1] / "docs"
    return BPETokenizer.train([p.read_text() for p in sorted(docs.rglob("*.md"))], vocab_size=vocab)


def run_batch(model: TransformerLM, tok: BPETokenizer, prompts: list[list[int]], options: list[GenerationOptions],
              concurrency: int) -> tuple[float, list[float], dict[int, list[int]]]:
    """Closed loop at `concurrency`: (wall seconds, each request's time to first token, each one's tokens)."""
    batch = ContinuousBatch(model, tok, max_batch=concurrency)
    tokens: dict[int, list[int]] = {i: [] for i in range(len(prompts))}
    added, ttft, waiting = {}, [], list(range(len(prompts)))
    start = time.perf_counter()
    while waiting or len(batch):
        while waiting and batch.free_slots:
            i = waiting.pop(0)
            added[i] = time.perf_counter()
            batch.add(i, prompts[i], options[i])
        for event in batch.step():
            if not tokens[event.request_id]:
                ttft.append(time.perf_counter() - added[event.request_id])
            tokens[event.request_id].append(event.token_id)
    return time.perf_counter() - start, ttft, tokens


def run_generate(model: TransformerLM, prompt: list[int], options: GenerationOptions) -> tuple[float, list[int]]:
    start = time.perf_counter()
    out = generate(model, torch.tensor([prompt]), **vars(options))
    return time.perf_counter() - start, out.sequences[0, len(prompt):].tolist()


def one_round(model: TransformerLM, tok: BPETokenizer, prompts: list[list[int]], options: list[GenerationOptions],
              concurrency: list[int]) -> tuple[float, dict[int, tuple[float, list[float], dict]]]:
    """generate()'s seconds for every request, and per concurrency the batcher's (seconds, TTFTs, tokens);
    at concurrency 1 the two engines take turns request by request."""
    generate_s, alone_s, alone_ttft, alone_tokens, generated = 0.0, 0.0, [], {}, {}
    for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        seconds, ttft, tokens = run_batch(model, tok, [prompt], [opts], 1)
        alone_s, alone_ttft, alone_tokens[i] = alone_s + seconds, alone_ttft + ttft, tokens[0]
        seconds, generated[i] = run_generate(model, prompt, opts)
        generate_s += seconds
    batched = {c: run_batch(model, tok, prompts, options, c) for c in concurrency if c != 1}
    batched[1] = (alone_s, alone_ttft, alone_tokens)
    return generate_s, {c: batched[c] + (generated,) for c in concurrency}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--concurrency", default="1,16", help="comma-separated numbers of requests in flight")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = tokenizer(args.vocab)
    model = TransformerLM(tok.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                          context_length=args.context).eval()
    prompts = torch.randint(0, tok.vocab_size, (args.requests, args.prompt_len)).tolist()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    total = args.requests * args.new_tokens
    summary = []
    for mode in args.modes.split(","):
        options = [GenerationOptions(max_new_tokens=args.new_tokens, seed=i, **MODES[mode]) for i in range(args.requests)]
        run_generate(model, prompts[0], options[0])  # warm-up
        rounds = [one_round(model, tok, prompts, options, concurrency) for _ in range(args.repeats)]
        generate_s = min(r[0] for r in rounds)
        for c in concurrency:
            batch_s, ttft, batch_tokens, generated = min((r[1][c] for r in rounds), key=lambda b: b[0])
            ratios = [generate / batched[c][0] for generate, batched in rounds]
            row = {"bench": "batching", "mode": mode, "concurrency": c, "requests": args.requests,
                   "new_tokens": args.new_tokens, "model": f"{args.n_layer}x{args.n_embd}", "vocab": tok.vocab_size,
                   "threads": args.threads, "batch_tok_s": round(total / batch_s, 1),
                   "generate_tok_s": round(total / generate_s, 1), "speedup": round(generate_s / batch_s, 2),
                   "round_speedups": [round(r, 2) for r in ratios],
                   "speedup_round_median": round(statistics.median(ratios), 2),
                   "ttft_p50_s": round(percentile(ttft, 50), 4), "ttft_p95_s": round(percentile(ttft, 95), 4),
                   "same_tokens": batch_tokens == generated, "machine": platform.machine(),
                   "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
            print(json.dumps(row), flush=True)
            summary.append(f"{mode} c={c}: {row['batch_tok_s']:.0f} tok/s vs generate {row['generate_tok_s']:.0f} "
                           f"({row['speedup']}x, round median {row['speedup_round_median']}x), "
                           f"TTFT p95 {row['ttft_p95_s'] * 1e3:.0f} ms")
    print("; ".join(summary))


if __name__ == "__main__":
    main()
