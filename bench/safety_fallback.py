"""The confidence fallback on a FAQ bot: accuracy on the questions it answers, with and without it.

A shop FAQ built from templates (seeded, deterministic): 30 products x 5 intents (price, stock,
warranty, colours, delivery) = 150 facts, each asked three ways in training. Held out: two other
rewordings of every fact (300 questions), 30 questions about products the shop does not sell and 10
unrelated ones (reference answers the bot never saw: it can only be wrong on them). A seq2seq GRU with
Luong attention learns the FAQ on the CPU (word tokens); then, per decoding (greedy; beam search, whose
confidence is the beam score):

  1. the held-out questions are shuffled (seeded) and halved: a calibration half and a test half;
  2. `seqlab.eval.calibrate` picks the threshold on the calibration half (best accuracy on the answered
     at coverage >= the target), as `seqlab calibrate` does;
  3. on the test half: accuracy on all questions (no fallback), and with the fallback the coverage
     (answered / all) and the accuracy on the answered; also how many right and wrong replies it kept.

A reply is right when it equals the reference (case and spaces aside) or has ROUGE-L F >= 0.8 with it.
`replies_unlike_greedy` counts the held-out questions a decoding answers otherwise than greedy search (a
bot this sure of itself mostly gives the same reply, and then a beam score equals the greedy confidence).

    python bench/safety_fallback.py                   # under a minute on one CPU thread
    python bench/safety_fallback.py --steps 50        # a smoke run
    python bench/safety.py --part fallback            # the same rows, from the safety benchmark

One JSON line per (decoding, target coverage), then a one-line summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from seqlab.chat import ChatSession
from seqlab.config import load_config
from seqlab.decode import GenerationOptions
from seqlab.eval.calibrate import ScoredReply, answers, calibrate, reply_to_pairs
from seqlab.models.loading import load_model_from_run
from seqlab.train.seq2seq import train_seq2seq

PRODUCTS = ["laptop", "phone", "kettle", "toaster", "blender", "camera", "tablet", "printer", "monitor", "keyboard",
            "mouse", "speaker", "headset", "router", "heater", "fan", "lamp", "clock", "radio", "watch", "drill",
            "vacuum", "iron", "mixer", "scale", "projector", "charger", "cooker", "fridge", "freezer"]
NOT_SOLD = ["boat", "car", "bike", "sofa", "piano", "tent", "guitar", "ladder", "mattress", "helmet", "violin",
            "tractor", "canoe", "saddle", "trumpet", "kayak", "scooter", "wardrobe", "bed", "table", "chair", "desk",
            "rug", "curtain", "mirror", "oven", "sink", "bath", "shower", "toilet"]
UNRELATED = [("what is the weather like", "i can not tell the weather"), ("who won the match", "i do not follow sport"),
             ("tell me a joke", "i only know about the shop"), ("what is your name", "i am the shop helper"),
             ("can you book me a taxi", "i can not book taxis"), ("what day is it", "i do not know the date"),
             ("do you like music", "i only know about the shop"), ("where can i eat", "i do not know any cafes"),
             ("how old are you", "i am the shop helper"), ("can you fix my car", "we do not repair cars")]
STEPS = 400  # the bot is right on about three rewordings in four by then
COLOURS = ["black", "white", "red", "blue", "green", "grey", "silver", "pink"]

# intent -> (three training phrasings, two held-out rewordings, the answer), {p} the product
INTENTS = {
    "price": (["how much is the {p}", "what does the {p} cost", "what is the price of the {p}"],
              ["how much does the {p} cost", "what price is the {p}"], "the {p} costs {price} pounds"),
    "stock": (["is the {p} in stock", "do you have the {p} in stock", "can i buy the {p} now"],
              ["have you got the {p} in stock", "is the {p} available now"], "{stock}"),
    "warranty": (["what is the warranty on the {p}", "how long is the {p} warranty", "does the {p} have a warranty"],
                 ["how long is the warranty for the {p}", "is there a warranty on the {p}"],
                 "the {p} has a {years} year warranty"),
    "colours": (["what colours does the {p} come in", "which colours is the {p} in", "is the {p} in other colours"],
                ["what colour is the {p}", "does the {p} come in other colours"], "the {p} comes in {c1} and {c2}"),
    "delivery": (["how long does the {p} take to arrive", "when will the {p} arrive", "how fast is delivery for the {p}"],
                 ["how long is delivery for the {p}", "when does the {p} arrive"], "the {p} arrives in {days} days"),
}
NOT_SOLD_QUESTIONS = ["how much is the {p}", "is the {p} in stock", "what colours does the {p} come in"]


def build_faq(seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(training pairs, held-out (question, reference, kind)): kind is "reworded" or "out_of_scope"."""
    rng = random.Random(seed)
    train, heldout = [], []
    for p in PRODUCTS:
        c1, c2 = rng.sample(COLOURS, 2)
        facts = {"price": rng.randrange(5, 500), "years": rng.randrange(1, 6), "days": rng.randrange(1, 8),
                 "stock": f"yes the {p} is in stock" if rng.random() < 0.6 else f"no the {p} is sold out",
                 "c1": c1, "c2": c2}
        for phrasings, rewordings, answer in INTENTS.values():
            reply = answer.format(p=p, **facts)
            train += [(q.format(p=p), reply) for q in phrasings]
            heldout += [(q.format(p=p), reply, "reworded") for q in rewordings]
    for i, p in enumerate(NOT_SOLD):
        heldout.append((NOT_SOLD_QUESTIONS[i % len(NOT_SOLD_QUESTIONS)].format(p=p), f"we do not sell the {p}",
                        "out_of_scope"))
    heldout += [(q, a, "out_of_scope") for q, a in UNRELATED]
    return train, heldout


def train_bot(train: list[tuple[str, str]], folder: Path, steps: int, seed: int) -> tuple[Path, float]:
    corpus = folder / "faq.jsonl"
    corpus.write_text("".join(json.dumps({"source": q, "target": a, "group": f"{k}:{i}"}) + "\n"
                              for k in range(4) for i, (q, a) in enumerate(train)), encoding="utf-8")
    config = load_config(None, base={
        "seed": seed,
        "data": {"corpus": str(corpus), "task": "pairs", "tokenizer": "word", "split": "contiguous",
                 "val_fraction": 0.25, "history_turns": 1},
        "model": {"arch": "seq2seq_rnn", "cell": "gru", "attention": "luong-general", "n_layer": 1, "n_embd": 64,
                  "hidden_size": 128, "bidirectional": True},
        "train": {"batch_size": 32, "max_steps": steps, "lr": 5e-3, "warmup_steps": max(1, steps // 20),
                  "eval_interval": steps, "log_interval": steps, "samples": 0},
        "decode": {"max_new_tokens": 16, "do_sample": False, "num_beams": 1},
    })
    started = time.perf_counter()
    train_seq2seq(config, folder / "run", "cpu")
    return folder / "run", time.perf_counter() - started


def evaluate(replies: list[ScoredReply], heldout: list[tuple[str, str, str]], targets: list[float], seed: int,
             decoding: str) -> list[dict[str, Any]]:
    """Calibrate on one shuffled half of the held-out replies, measure on the other, per target coverage."""
    order = list(range(len(heldout)))
    random.Random(seed).shuffle(order)
    halves = order[:len(order) // 2], order[len(order) // 2:]
    calibration = [replies[i] for i in halves[0]]
    test = [(replies[i], heldout[i][2]) for i in halves[1]]
    rows = []
    for target in targets:
        chosen = calibrate([r.confidence for r in calibration], [r.right for r in calibration], target).chosen
        kept = [(r, kind) for r, kind in test if answers(chosen.threshold, r.confidence)]
        right_total = sum(r.right for r, _ in test)
        right_kept = sum(r.right for r, _ in kept)
        rows.append({
            "bench": "safety", "part": "fallback", "decoding": decoding, "target_coverage": target,
            "threshold": chosen.threshold, "calibration_questions": len(calibration), "test_questions": len(test),
            "calibration_coverage": round(chosen.coverage, 4), "calibration_accuracy": round(chosen.accuracy, 4),
            "accuracy_no_fallback": round(right_total / len(test), 4),
            "coverage": round(len(kept) / len(test), 4),
            "accuracy_on_answered": round(right_kept / len(kept), 4) if kept else None,
            "right_kept": right_kept, "right_total": right_total,
            "wrong_kept": len(kept) - right_kept, "wrong_total": len(test) - right_total,
            "out_of_scope_answered": sum(kind == "out_of_scope" for _, kind in kept),
            "out_of_scope_total": sum(kind == "out_of_scope" for _, kind in test),
        })
    return rows


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The benchmark's rows (also `bench/safety.py --part fallback`); options missing from `args` take defaults."""
    steps, seed = getattr(args, "steps", None) or STEPS, getattr(args, "seed", None) or 0
    targets = getattr(args, "coverage", None) or [0.8, 0.6]
    train, heldout = build_faq(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains and decodes fastest on one thread (far faster on a busy CPU)
    try:
        with tempfile.TemporaryDirectory(prefix="seqlab-faq-") as tmp:
            run_dir, train_s = train_bot(train, Path(tmp), steps, seed)
            model, tokenizer, config = load_model_from_run(run_dir, "cpu")
            replies = {}
            for decoding, beams in (("greedy", 1), ("beam 4", 4)):
                options = GenerationOptions.from_config(config.decode, tokenizer, num_beams=beams)
                session = ChatSession(model, tokenizer, options, config.data.history_turns, seed=seed)
                replies[decoding] = reply_to_pairs(session, [(q, a) for q, a, _ in heldout], batch_size=64, seed=seed)
    finally:
        torch.set_num_threads(threads)
    about = {"train_pairs": len(train), "heldout_questions": len(heldout), "steps": steps,
             "train_s": round(train_s, 1), "model": "seq2seq GRU 64/128 + Luong attention, word tokens",
             "torch_threads": 1}
    rows = []
    for decoding, answered in replies.items():
        unlike = sum(a.text != g.text for a, g in zip(answered, replies["greedy"], strict=True))
        rows += [row | {"replies_unlike_greedy": unlike} | about
                 for row in evaluate(answered, heldout, targets, seed, decoding)]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--coverage", type=float, nargs="+", default=[0.8, 0.6], help="target coverages to calibrate for")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    machine = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    rows = run(args)
    for row in rows:
        print(json.dumps(row | machine))
    print("fallback: " + "; ".join(
        f"{r['decoding']} at coverage >= {r['target_coverage']:.0%}: accuracy {r['accuracy_no_fallback']:.1%} -> "
        f"{r['accuracy_on_answered']:.1%} on the {r['coverage']:.0%} answered" for r in rows
        if r["accuracy_on_answered"] is not None), file=sys.stderr)


if __name__ == "__main__":
    main()
