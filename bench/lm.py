"""Language-model benchmark: train a preset, report best val loss, tokens/s and wall time as JSON lines.

    python bench/lm.py shakespeare-char-transformer-cpu                 # the preset as it is
    python bench/lm.py shakespeare-char-transformer-cpu --budget 600    # max_steps sized to 10 minutes
    python bench/lm.py shakespeare-char-transformer --peer hf           # also HF GPT2LMHeadModel tokens/s

Val loss is nats per token over the whole val split in non-overlapping windows of the context
length (`train.eval_batches` is forced to null). `--budget S` times a few steps first and sets
`train.max_steps` so that training (with its evaluations) fits in S seconds, keeping the full
warm-up + cosine schedule. `--peer hf` times seqlab's model and a Hugging Face `GPT2LMHeadModel` of
the same shape (layers, heads, width, context, vocabulary, dropout) on the same batches, optimizer
and precision, and prints both throughputs and their ratio. The last line is a human summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from seqlab.config import Config, load_config
from seqlab.device import resolve_device
from seqlab.errors import SeqlabError
from seqlab.train.lm import train_lm


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def seconds_per_step(cfg: Config, device: str, steps: int) -> float:
    """Wall seconds per optimizer step of `cfg`, measured on a short throw-away run (after one warm-up step)."""
    probe = load_config(base=cfg.to_dict(), overrides=[f"train.max_steps={steps}", f"train.eval_interval={steps}",
                                                       "train.eval_batches=1", "train.samples=0"])
    with tempfile.TemporaryDirectory() as tmp:
        summary = train_lm(probe, Path(tmp) / "run", device)
    tokens_per_step = cfg.train.batch_size * cfg.model.context_length
    return tokens_per_step / summary["tokens_per_s"]


def budget_steps(cfg: Config, device: str, budget_s: float) -> int:
    """Steps that fit in `budget_s`, leaving room for the evaluations (each ~ one pass over the val split)."""
    per_step = seconds_per_step(cfg, device, steps=20)
    evals_share = 0.1  # measured: a whole-val evaluation costs a few training steps on these presets
    return max(1, int(budget_s * (1 - evals_share) / per_step))


def run_preset(cfg: Config, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = train_lm(cfg, Path(tmp) / "run", device)
        wall = time.perf_counter() - start
    return {"best_val_loss": summary["best_val_loss"], "best_step": summary["best_step"], "steps": summary["step"],
            "tokens_per_s": summary["tokens_per_s"], "wall_s": wall}


def peer_throughput(cfg: Config, device: torch.device, steps: int) -> dict:
    """tokens/s of seqlab's model and of HF GPT2LMHeadModel with the same shape, same batches and optimizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from seqlab.data.prepare import prepare_data
    from seqlab.models import build_model
    from seqlab.train.batches import WindowSampler
    from seqlab.train.optim import build_optimizer, build_scheduler
    from seqlab.train.step import resolve_precision, train_step

    data = prepare_data(cfg.data, cfg.seed)
    m, t = cfg.model, cfg.train
    vocab = data.tokenizer.vocab_size
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=m.context_length, n_embd=m.n_embd,
                                    n_layer=m.n_layer, n_head=m.n_head, resid_pdrop=m.dropout, embd_pdrop=m.dropout,
                                    attn_pdrop=m.dropout, activation_function="gelu",
                                    bos_token_id=data.tokenizer.bos_id, eos_token_id=data.tokenizer.eos_id))
    models = {"seqlab": (build_model(m, vocab), lambda model, b: model(b[0], b[1])[1]),
              "hf": (hf, lambda model, b: torch.nn.functional.cross_entropy(
                  model(input_ids=b[0]).logits.flatten(0, 1), b[1].flatten()))}
    precision = resolve_precision(t.precision, device)
    out = {}
    for name, (model, loss_fn) in models.items():
        model = model.to(device).train()
        opt = build_optimizer(model, t.lr, t.weight_decay, (t.beta1, t.beta2), device)
        sched = build_scheduler(opt, t.lr, t.min_lr, t.warmup_steps, t.max_steps)
        sampler = WindowSampler(data.splits["train"].ids.to(device), m.context_length, t.batch_size, t.grad_accum,
                                cfg.seed)
        runner = torch.compile(model) if t.compile else model
        for _ in range(max(3, steps // 5)):  # warm-up (and compilation)
            train_step(runner, sampler.next_step(), loss_fn, opt, sched, t.grad_clip, device, precision)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = train_step(runner, sampler.next_step(), loss_fn, opt, sched, t.grad_clip, device, precision)
        loss.item()
        _sync(device)
        out[name] = steps * t.batch_size * m.context_length / (time.perf_counter() - start)
        out[f"{name}_params"] = sum(p.numel() for p in model.parameters())
    return {"seqlab_tokens_per_s": out["seqlab"], "hf_tokens_per_s": out["hf"], "ratio": out["seqlab"] / out["hf"],
            "seqlab_params": out["seqlab_params"], "hf_params": out["hf_params"], "steps": steps}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", help="preset name or YAML path")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--steps", type=int, help="train.max_steps (default: the preset's)")
    ap.add_argument("--budget", type=float, help="size train.max_steps to this many seconds of training")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--peer", choices=["hf"], help="also time HF GPT2LMHeadModel of the same shape")
    ap.add_argument("--peer-steps", type=int, default=50, help="timed steps per model for --peer")
    ap.add_argument("--no-train", action="store_true", help="with --peer: only the throughput comparison")
    args = ap.parse_args()

    cfg = load_config(args.preset, args.overrides + ["train.eval_batches=null"])
    device = resolve_device(args.device)
    common = {"preset": args.preset, "overrides": args.overrides, "device": str(device), "machine": machine(device),
              "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    if args.budget is not None:
        cfg = load_config(base=cfg.to_dict(), overrides=[f"train.max_steps={budget_steps(cfg, args.device, args.budget)}"])
    elif args.steps is not None:
        cfg = load_config(base=cfg.to_dict(), overrides=[f"train.max_steps={args.steps}"])
    summary = []
    if not args.no_train:
        result = {"bench": "lm", **common, "budget_s": args.budget, **run_preset(cfg, args.device)}
        print(json.dumps(result), flush=True)
        summary.append(f"best val {result['best_val_loss']:.4f} at step {result['best_step']}/{result['steps']}, "
                       f"{result['tokens_per_s']:,.0f} tokens/s, {result['wall_s']:.1f} s")
    if args.peer == "hf":
        peer = {"bench": "lm-peer-hf", **common, **peer_throughput(cfg, device, args.peer_steps)}
        print(json.dumps(peer), flush=True)
        summary.append(f"seqlab {peer['seqlab_tokens_per_s']:,.0f} vs HF GPT-2 {peer['hf_tokens_per_s']:,.0f} tokens/s "
                       f"(x{peer['ratio']:.2f})")
    print(f"# {args.preset} on {common['machine']}: " + "; ".join(summary))


if __name__ == "__main__":
    try:
        main()
    except SeqlabError as e:
        raise SystemExit(f"bench/lm.py: error: {e}") from None
