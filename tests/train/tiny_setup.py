"""A tiny corpus and a tiny LM config for training tests (seconds on one CPU core)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import shared_data_file


def write_tiny_setup(tmp: Path, **train: object) -> Path:
    """tmp/tiny.txt (the first 20,000 characters of tinyshakespeare) and tmp/tiny.yaml; returns the YAML."""
    corpus = tmp / "tiny.txt"
    text = shared_data_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    corpus.write_text(text[:20000], encoding="utf-8")
    cfg = {
        "seed": 7,
        "data": {"corpus": str(corpus), "task": "lm", "tokenizer": "char", "split": "contiguous", "val_fraction": 0.1},
        "model": {"arch": "transformer_lm", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 16},
        "train": {"batch_size": 8, "max_steps": 30, "eval_interval": 10, "log_interval": 1, "warmup_steps": 5,
                  "samples": 1, **train},
        "decode": {"max_new_tokens": 20},
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture
def one_thread():
    """Tiny models train far faster on one thread of a busy CPU (and the result does not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
