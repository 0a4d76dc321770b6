"""The attention result (the shape of Bahdanau et al. 2015) on synthetic tasks with exact answers.

Tasks over random sequences of `--symbols` symbols, lengths 5..40 (uniform):
    reverse   x_1 .. x_n  ->  x_n .. x_1
    sort      x_1 .. x_n  ->  the same symbols in ascending order
Models at about the same parameter count (`--params`; each model's width is searched to fit):
    none       GRU encoder-decoder, no attention (the decoder sees only the final encoder state)
    bahdanau   GRU + additive attention
    luong      GRU + Luong general attention with input feeding
    transformer  pre-LN Transformer encoder-decoder (2 + 2 layers, 4 heads)
Training samples fresh sequences every step (never one of the held-out test sequences); evaluation
decodes greedily with `seqlab.decode.generate` and reports exact-match accuracy and BLEU
(sacrebleu, tokenize=none) per length bucket, plus a PNG of exact match vs length per task.

    python bench/attention.py                      # the README's run (JSON on stdout, summary on stderr)
    python bench/attention.py --tasks sort         # one task (two processes, one per task, use both cores)
    python bench/attention.py --steps 30 --params 20000 --test-per-length 2 --tasks reverse   # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from seqlab.config import ModelConfig
from seqlab.decode import generate
from seqlab.device import resolve_device, seed_everything
from seqlab.eval.bleu import corpus_bleu
from seqlab.eval.plots import plot_learning_curves
from seqlab.models import build_model
from seqlab.train.optim import build_optimizer, build_scheduler
from seqlab.train.pair_batches import collate_pairs

PAD, BOS, EOS, FIRST_SYMBOL = 0, 2, 3, 5  # ids 0..4 are the usual specials
TASKS = {"reverse": lambda xs: xs[::-1], "sort": sorted}
MODELS = ("none", "bahdanau", "luong", "transformer")
BUCKETS = ((5, 10), (11, 20), (21, 30), (31, 40))


def model_config(kind: str, width: int) -> ModelConfig:
    if kind == "transformer":
        return ModelConfig(arch="seq2seq_transformer", n_layer=2, n_head=4, n_embd=width, context_length=48)
    attention = {"none": "none", "bahdanau": "bahdanau", "luong": "luong-general"}[kind]
    return ModelConfig(arch="seq2seq_rnn", cell="gru", attention=attention, n_layer=1, n_embd=width // 2,
                       hidden_size=width, bidirectional=True, input_feeding=True)


def build(kind: str, vocab: int, params: int) -> tuple[torch.nn.Module, int]:
    """The model of `kind` whose parameter count is closest to `params` (width a multiple of 4)."""
    def make(width: int) -> torch.nn.Module:
        return build_model(model_config(kind, width), vocab, pad_id=PAD, bos_id=BOS, eos_id=EOS)

    def count(width: int) -> int:
        return sum(p.numel() for p in make(width).parameters())

    lo, hi = 1, 128  # widths 4 * lo .. 4 * hi; the count grows with the width, so bisect
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(4 * mid) < params else (lo, mid)
    width = min((4 * max(1, lo - 1), 4 * lo), key=lambda w: abs(count(w) - params))
    return make(width), width


def random_pairs(task: str, n: int, lengths: tuple[int, int], symbols: int, generator: torch.Generator,
                 exclude: set[tuple[int, ...]] = frozenset()) -> list[tuple[list[int], list[int]]]:
    pairs = []
    while len(pairs) < n:
        length = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=generator))
        xs = (torch.randint(symbols, (length,), generator=generator) + FIRST_SYMBOL).tolist()
        if tuple(xs) not in exclude:
            pairs.append((xs, list(TASKS[task](xs))))
    return pairs


def test_set(task: str, per_length: int, lengths: tuple[int, int], symbols: int, seed: int):
    generator = torch.Generator().manual_seed(seed + 1)
    return [p for n in range(lengths[0], lengths[1] + 1)
            for p in random_pairs(task, per_length, (n, n), symbols, generator)]


def train(model: torch.nn.Module, task: str, args: argparse.Namespace, exclude: set, device: torch.device) -> float:
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = build_optimizer(model, args.lr, 0.0, (0.9, 0.98), device)
    scheduler = build_scheduler(optimizer, args.lr, args.lr / 10, min(200, args.steps // 10), args.steps)
    model.train()
    started = time.perf_counter()
    for _ in range(args.steps):
        pairs = random_pairs(task, args.batch_size, (args.min_len, args.max_len), args.symbols, generator, exclude)
        src, src_mask, tgt_in, targets = (x.to(device) for x in collate_pairs(pairs, PAD, BOS, EOS))
        _, loss = model(src, src_mask, tgt_in, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


@torch.no_grad()
def evaluate(model: torch.nn.Module, pairs: list, device: torch.device, batch_size: int = 128) -> list[dict]:
    """Per test pair: its source length, exact match, and hypothesis / reference strings for BLEU."""
    model.eval()
    rows = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        src, src_mask, _, _ = collate_pairs(chunk, PAD, BOS, EOS)
        out = generate(model, src.to(device), attention_mask=src_mask.to(device), do_sample=False,
                       max_new_tokens=max(len(t) for _, t in chunk) + 1, eos_token_id=EOS, pad_token_id=PAD)
        for (xs, ys), row in zip(chunk, out.sequences[:, 1:].tolist(), strict=True):
            hyp = row[:row.index(EOS)] if EOS in row else row
            rows.append({"length": len(xs), "exact": hyp == ys, "hyp": " ".join(map(str, hyp)),
                         "ref": " ".join(map(str, ys))})
    return rows


def summarize(rows: list[dict]) -> dict:
    buckets = {}
    for lo, hi in BUCKETS:
        part = [r for r in rows if lo <= r["length"] <= hi]
        if part:
            buckets[f"{lo}-{hi}"] = {
                "exact_match": sum(r["exact"] for r in part) / len(part),
                "bleu": corpus_bleu([r["hyp"] for r in part], [[r["ref"] for r in part]], tokenize="none"),
                "n": len(part)}
    by_length = {}
    for r in rows:
        by_length.setdefault(r["length"], []).append(r["exact"])
    return {"exact_match": sum(r["exact"] for r in rows) / len(rows),
            "buckets": buckets, "by_length": {n: sum(v) / len(v) for n, v in sorted(by_length.items())}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--params", type=int, default=100_000, help="target parameter count per model")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--min-len", type=int, default=5)
    p.add_argument("--max-len", type=int, default=40)
    p.add_argument("--test-per-length", type=int, default=20)
    p.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (small models: 1 is about optimal)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    vocab = FIRST_SYMBOL + args.symbols
    result = {"bench": "attention", "device": str(device), "torch_threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"), "args": {k: str(v) for k, v in vars(args).items()}, "tasks": {}}
    for task in args.tasks:
        test = test_set(task, args.test_per_length, (args.min_len, args.max_len), args.symbols, args.seed)
        exclude = {tuple(xs) for xs, _ in test}
        curves, models = {}, {}
        for kind in args.models:
            seed_everything(args.seed)
            model, width = build(kind, vocab, args.params)
            model.to(device)
            train_s = train(model, task, args, exclude, device)
            summary = summarize(evaluate(model, test, device))
            models[kind] = {"params": sum(p.numel() for p in model.parameters()), "width": width,
                            "train_s": round(train_s, 1), **summary}
            curves[kind] = list(summary["by_length"].items())
            print(f"{task:8s} {kind:12s} params {models[kind]['params']:>8,d}  exact match "
                  f"{summary['exact_match']:.3f}  " + "  ".join(f"{b}: {v['exact_match']:.3f}"
                                                               for b, v in summary["buckets"].items())
                  + f"  ({train_s:.0f} s)", file=sys.stderr)
        plot = plot_learning_curves(curves, args.out_dir / f"attention_{task}.png", xlabel="source length",
                                    ylabel="exact match (greedy)", title=f"{task}: exact match vs length")
        result["tasks"][task] = {"models": models, "plot": str(plot)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
