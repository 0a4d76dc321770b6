"""Seq2Seq vs Transformer on dialogue: held-out `shakespeare-dialogue` pairs (the classic comparison).

Four encoder-decoders of about the same width, trained for the same steps and batch size with the seq2seq
recipe on (speech -> next speech of another speaker) pairs, split by scene so that no scene of the test
set was seen in training:
    gru-luong        GRU, bidirectional encoder, Luong (general) attention with input feeding
    lstm-bahdanau    LSTM, bidirectional encoder, Bahdanau (additive) attention
    gru-none         GRU, bidirectional encoder, no attention (the decoder sees only the final state)
    transformer      pre-LN Transformer encoder-decoder (3 + 3 layers, shared embeddings; lr 2e-3, the RNNs 3e-3:
                     at 600 steps a 2 + 2 layer model at 1e-3 / 3e-3 reached val loss 4.48 / 4.42, 3 + 3 at 2e-3 4.41)
Each is scored by `seqlab eval` on the test split: perplexity (teacher-forced), then greedy replies with
BLEU, ROUGE-L and distinct-2. Attention models and the Transformer should beat the no-attention baseline
on perplexity.

    python bench/dialogue.py                         # CPU sizes (about 25 minutes on 2 cores)
    python bench/dialogue.py --size gpu --device cuda   # H100 sizes
    python bench/dialogue.py --steps 3 --size tiny --eval-limit 8   # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from seqlab.config import load_config
from seqlab.eval.run_eval import evaluate_run
from seqlab.models.loading import load_model_from_run
from seqlab.train.seq2seq import train_seq2seq

MODELS = {
    "gru-luong": {"arch": "seq2seq_rnn", "cell": "gru", "attention": "luong-general", "input_feeding": True},
    "lstm-bahdanau": {"arch": "seq2seq_rnn", "cell": "lstm", "attention": "bahdanau"},
    "gru-none": {"arch": "seq2seq_rnn", "cell": "gru", "attention": "none"},
    "transformer": {"arch": "seq2seq_transformer", "n_layer": 3, "n_head": 4, "context_length": 64,
                    "positions": "sinusoidal"},
}
# width (embedding = Transformer width; RNN hidden), steps, batch size, evaluation examples: the vocabulary
# embedding dominates, so the four come out close in parameters (cpu: 2.1M-2.9M, gpu: 5.2M-8.6M at 12k words)
SIZES = {
    "tiny": {"n_embd": 16, "hidden_size": 32, "steps": 20, "batch_size": 8, "eval_limit": 16},
    "cpu": {"n_embd": 128, "hidden_size": 256, "steps": 1500, "batch_size": 32, "eval_limit": 400},
    "gpu": {"n_embd": 256, "hidden_size": 512, "steps": 6000, "batch_size": 128, "eval_limit": 3000},
}


def config_for(model: str, size: dict, steps: int, seed: int) -> object:
    arch = dict(MODELS[model])
    width = {"n_embd": size["n_embd"]} if arch["arch"] == "seq2seq_transformer" else \
        {"n_embd": size["n_embd"], "hidden_size": size["hidden_size"], "n_layer": 1, "bidirectional": True}
    base = {
        "seed": seed,
        "data": {"corpus": "shakespeare-dialogue", "task": "pairs", "tokenizer": "word", "max_vocab": 12000,
                 "min_freq": 2, "split": "random", "val_fraction": 0.05, "test_fraction": 0.05,
                 "history_turns": 1, "max_source_len": 48, "max_target_len": 48},
        "model": {**arch, **width, "dropout": 0.1, "share_embeddings": True, "tie_embeddings": True},
        "train": {"batch_size": size["batch_size"], "max_steps": steps, "lr": 2e-3 if "transformer" in model else 3e-3,
                  "min_lr": 1e-4, "warmup_steps": max(1, steps // 20), "weight_decay": 0.01, "grad_clip": 1.0,
                  "eval_interval": steps, "eval_batches": 20, "log_interval": max(1, steps // 10), "samples": 1},
        "decode": {"max_new_tokens": 48, "do_sample": False, "num_beams": 1},
    }
    return load_config(None, base=base)


def run_one(model: str, size: dict, steps: int, seed: int, device: str, out: Path, eval_limit: int) -> dict:
    cfg = config_for(model, size, steps, seed)
    summary = train_seq2seq(cfg, out / model, device)
    net, tok, cfg = load_model_from_run(out / model, device)
    metrics, _, _ = evaluate_run(net, tok, cfg, None, "test", eval_limit, None,
                                 {"do_sample": False, "num_beams": 1, "seed": seed}, "en", batch_size=64)
    return {"model": model, "params": sum(p.numel() for p in net.parameters()), "steps": summary["step"],
            "train_s": round(summary["wall_s"], 1), "tokens_per_s": round(summary["tokens_per_s"]),
            "best_val_loss": round(summary["best_val_loss"], 4), **{k: metrics[k] for k in (
                "perplexity", "bleu", "rougeL", "distinct2", "avg_len", "examples")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--size", choices=list(SIZES), default="cpu", help="model width, steps and batch (see SIZES)")
    ap.add_argument("--steps", type=int, help="training steps per model (default: the size's)")
    ap.add_argument("--eval-limit", type=int, help="test pairs scored (default: the size's)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--out-dir", type=Path, help="keep the runs here (default: a temporary directory)")
    args = ap.parse_args()
    size = SIZES[args.size]
    steps, eval_limit = args.steps or size["steps"], args.eval_limit or size["eval_limit"]
    with tempfile.TemporaryDirectory(prefix="seqlab-dialogue-") as tmp:
        out = args.out_dir or Path(tmp)
        results = [run_one(m, size, steps, args.seed, args.device, out, eval_limit) for m in args.models]
    by_name = {r["model"]: r for r in results}
    report = {
        "benchmark": "dialogue", "corpus": "shakespeare-dialogue (test split, grouped by scene)",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"), "machine": platform.platform(),
        "device": args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(), "size": args.size, "steps": steps, "results": results,
    }
    if "gru-none" in by_name:
        report["beat_no_attention_on_perplexity"] = {
            r["model"]: r["perplexity"] < by_name["gru-none"]["perplexity"] for r in results if r["model"] != "gru-none"}
    print(json.dumps(report))
    print("dialogue: " + "; ".join(f"{r['model']} ppl {r['perplexity']:.1f} BLEU {r['bleu']:.2f} ROUGE-L "
                                   f"{r['rougeL']:.3f} distinct-2 {r['distinct2']:.3f} ({r['params']:,} params, "
                                   f"{r['train_s']:.0f} s)" for r in results), file=sys.stderr)


if __name__ == "__main__":
    main()
