"""Safety features' cost: decoding speed with a ban list against none (part "bans").

    python bench/safety.py                         # the issue's shape: char Transformer 6 x 384, 1,000 banned words
    python bench/safety.py --new-tokens 20 --repeats 1 --n-layer 1 --n-embd 32 --n-head 2   # a smoke run
    python bench/safety.py --part all              # also the "fallback" part, from bench/safety_fallback.py

Part "bans": a char Transformer LM with random weights (vocab: tinyshakespeare's 65 characters + 5
specials), a prompt of 16 random tokens, 200 new tokens sampled (top-k 50; min_new_tokens forces the
length), at batch 1 and 64, on 2 CPU threads. The ban list is the 1,000 most frequent words of
tinyshakespeare (synthetic words where $SEQLAB_DATA lacks it). Tokens/s = batch x new tokens / wall
seconds, best of `--repeats` rounds after one warm-up call each (which compiles the ban list); each
round times both in turn, and `slowdown_round_median` is the median of the rounds' own time ratios.
`slowdown` = banned time / plain time - 1 (the target: <= 0.10); `processor_share` is the part of a
banned run's time spent in the ban list's processor (timed inside it, steadier on a loaded machine).
One JSON line per case, then a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import random
import re
import statistics
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from seqlab.data.tokenizers import train_tokenizer
from seqlab.decode import generate
from seqlab.decode.banned_words import BannedWords, compile_ban_list
from seqlab.models.transformer_lm import TransformerLM

HERE = Path(__file__).resolve().parent


def corpus_text() -> str | None:
    for folder in [*os.environ.get("SEQLAB_DATA", "").split(os.pathsep), str(HERE.parent.parent / "shared" / "data")]:
        path = Path(folder) / "tinyshakespeare.txt"
        if folder and path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def ban_list(text: str | None, size: int) -> list[str]:
    """The `size` most frequent words of `text`, else `size` seeded random lowercase words of 3-9 letters."""
    if text is not None:
        counts = Counter(re.findall(r"[a-z']+", text.lower()))
        return [w for w, _ in counts.most_common(size)]
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))))
    return sorted(words)


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of `repeats` rounds, each calling every fn once in turn, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def processor_clock() -> Iterator[list[float]]:
    """Seconds spent inside BannedWords calls meanwhile: on a shared CPU, whose load drifts, a steadier
    measure of the ban list's cost than the difference of two wall times."""
    spent = [0.0]
    call = BannedWords.__call__

    def timed_call(self: BannedWords, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        begin = time.perf_counter()
        out = call(self, input_ids, scores)
        spent[0] += time.perf_counter() - begin
        return out

    BannedWords.__call__ = timed_call
    try:
        yield spent
    finally:
        BannedWords.__call__ = call


def bench_bans(args: argparse.Namespace) -> list[dict]:
    text = corpus_text()
    tokenizer = train_tokenizer("char", [text if text is not None else string.printable])
    words = ban_list(text, args.ban_size)
    begin = time.perf_counter()
    compile_ban_list(words, tokenizer, [tokenizer.eos_id])
    compile_s = time.perf_counter() - begin
    torch.manual_seed(0)
    model = TransformerLM(tokenizer.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                          context_length=args.context).eval()
    rows = []
    for batch in args.batches:
        prompt = torch.randint(5, tokenizer.vocab_size, (batch, args.prompt_len))
        kw = dict(do_sample=True, top_k=50, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                  eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id, seed=0)

        def run(banned: list[str] | None, prompt: torch.Tensor = prompt, kw: dict = kw) -> None:
            out = generate(model, prompt, tokenizer=tokenizer, banned_words=banned, **kw)
            assert out.sequences.shape[1] == args.prompt_len + args.new_tokens

        times = timed({"plain": lambda: run(None), "banned": lambda: run(words)}, args.repeats)
        with processor_clock() as spent:
            begin = time.perf_counter()
            run(words)
            total = time.perf_counter() - begin
        tokens = batch * args.new_tokens
        plain, banned = min(times["plain"]), min(times["banned"])
        rows.append({"bench": "safety", "part": "bans", "batch": batch, "ban_entries": len(words),
                     "new_tokens": args.new_tokens, "plain_tok_s": round(tokens / plain, 1),
                     "banned_tok_s": round(tokens / banned, 1), "slowdown": round(banned / plain - 1, 3),
                     "slowdown_round_median": round(statistics.median(
                         b / p - 1 for b, p in zip(times["banned"], times["plain"], strict=True)), 3),
                     "processor_ms_per_step": round(1e3 * spent[0] / args.new_tokens, 3),
                     "processor_share": round(spent[0] / total, 3), "ban_compile_s": round(compile_s, 3),
                     "model": f"char transformer {args.n_layer}x{args.n_embd}, vocab {tokenizer.vocab_size}"})
    return rows


def bench_fallback(args: argparse.Namespace) -> list[dict]:
    """Part "fallback": bench/safety_fallback.py's `run(args) -> list[dict]`, when that file exists."""
    path = HERE / "safety_fallback.py"
    if not path.is_file():
        return [{"bench": "safety", "part": "fallback", "skipped": f"{path.name} is not there"}]
    spec = importlib.util.spec_from_file_location("safety_fallback", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(args)


PARTS = {"bans": bench_bans, "fallback": bench_fallback}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=[*PARTS, "all"], default="bans")
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--ban-size", type=int, default=1000)
    p.add_argument("--batches", type=lambda v: [int(b) for b in v.split(",")], default=[1, 64],
                   help="comma-separated batch sizes (default 1,64)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    machine = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "date": datetime.date.today().isoformat()}
    rows = [row for part in (PARTS if args.part == "all" else [args.part]) for row in PARTS[part](args)]
    for row in rows:
        print(json.dumps(row | machine))
    bans = [r for r in rows if r["part"] == "bans"]
    if bans:
        print("bans: " + ", ".join(f"batch {r['batch']}: {r['banned_tok_s']:.0f} vs {r['plain_tok_s']:.0f} tok/s "
                                   f"({100 * r['slowdown']:+.1f}%)" for r in bans)
              + f" with {bans[0]['ban_entries']} banned words")


if __name__ == "__main__":
    main()
