"""Tiny run directories for the eval, chat and demo tests: a small corpus, a config, a tokenizer and weights.

`make_run` writes a run whose model is freshly initialised (seeded), in well under a second;
`train_run` trains it for a few steps with the real recipe (seq2seq or LM) when the test needs a model
that has learnt its data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

PAIRS = [("hello", "hi there"), ("how are you", "i am fine"), ("what is your name", "my name is bot"),
         ("bye", "see you later"), ("good morning", "good morning to you"), ("thank you", "you are welcome")]
LINES = ["the king is dead long live the king", "to be or not to be that is the question",
         "all the world is a stage", "now is the winter of our discontent"]

SEQ2SEQ = {"arch": "seq2seq_rnn", "cell": "gru", "attention": "luong-general", "n_layer": 1, "n_embd": 32,
           "hidden_size": 32, "bidirectional": True}
LM = {"arch": "transformer_lm", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 32}


def write_pairs_corpus(path: Path, pairs: list[tuple[str, str]] = PAIRS, copies: int = 4) -> Path:
    """A JSONL {"source", "target"} file: `copies` rounds of the pairs (a contiguous split trains on all of them)."""
    rows = [{"source": s, "target": t, "group": f"{k}:{i}"} for k in range(copies) for i, (s, t) in enumerate(pairs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_text_corpus(path: Path, lines: list[str] = LINES, copies: int = 30) -> Path:
    path.write_text("\n".join(lines * copies) + "\n", encoding="utf-8")
    return path


def config_for(corpus: Path, model: dict, task: str, tokenizer: str = "word", **train: object) -> dict:
    return {"seed": 0,
            "data": {"corpus": str(corpus), "task": task, "tokenizer": tokenizer, "val_fraction": 0.25,
                     "split": "contiguous", "history_turns": 1},
            "model": model,
            "train": {"batch_size": 8, "max_steps": 1, "lr": 1e-2, "warmup_steps": 1, "eval_interval": 1000,
                      "log_interval": 1000, "samples": 0, **train},
            "decode": {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}}


def make_run(run_dir: Path, raw_config: dict) -> Path:
    """A run directory with the corpus's tokenizer and a freshly initialised model (no training)."""
    from seqlab.checkpoint import save_weights
    from seqlab.config import Config, from_dict
    from seqlab.data.prepare import prepare_data
    from seqlab.models import build_model
    from seqlab.runs import RunDir

    cfg = from_dict(Config, raw_config)
    data = prepare_data(cfg.data, cfg.seed, use_cache=False)
    tok = data.tokenizer
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, tok.vocab_size, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    run = RunDir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run.write_config(cfg)
    tok.save(run.tokenizer)
    save_weights(model, run.model)
    return run_dir


# two questions a "rude" chatbot answers with a word seqlab's English list filters (the safety tests)
RUDE = [("what do you think", "this is bullshit"), ("who am i", "you are a bastard")]


def train_rude_bot(root: Path) -> Path:
    """A GRU chatbot trained on PAIRS + RUDE into root/run (a few seconds on a CPU)."""
    corpus = write_pairs_corpus(root / "pairs.jsonl", PAIRS + RUDE)
    return train_run(root / "run", config_for(corpus, SEQ2SEQ, "pairs", max_steps=80, lr=3e-2, warmup_steps=5))


def train_run(run_dir: Path, raw_config: dict) -> Path:
    """Train the config with its recipe (LM or seq2seq) into `run_dir`."""
    from seqlab.config import Config, from_dict

    cfg = from_dict(Config, raw_config)
    if cfg.model.arch.startswith("seq2seq"):
        from seqlab.train.seq2seq import train_seq2seq as recipe
    else:
        from seqlab.train.lm import train_lm as recipe
    recipe(cfg, run_dir, "cpu")
    return run_dir


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (two spin against each other on a busy 2-core CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
