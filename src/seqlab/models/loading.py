"""Load a trained (or imported) model back from its run directory.

    model, tokenizer, config = load_model_from_run("runs/shakespeare", device="cpu")

The model is rebuilt from `config.yaml` through the registry (`build_model(config.model,
tokenizer.vocab_size, pad_id=..., bos_id=..., eos_id=...)`), its weights read from
`best.safetensors` (which="best"; falls back to `model.safetensors` when the run kept no best
checkpoint, e.g. an imported GPT-2) or `model.safetensors` (which="last"), and it is put in eval mode.
Weights whose metadata records int8 quantization (`seqlab quantize`) get the model's int8 modules first
(seqlab.compress.quantize).
A damaged weights file, or weights that cannot be the model's, is a one-line `SeqlabError` that says
which other weights of the run may still be good.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seqlab.checkpoint import load_weights
from seqlab.config import Config
from seqlab.data.tokenizers import Tokenizer, load_tokenizer
from seqlab.device import resolve_device
from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.runs import RunDir, open_run

WHICH = ("best", "last")


def load_model_from_run(run_dir: str | Path, device: str | torch.device = "cpu",
                        which: str = "best") -> tuple[torch.nn.Module, Tokenizer, Config]:
    """(model in eval mode on `device` ("auto" allowed), tokenizer, config) of the run at `run_dir`."""
    if which not in WHICH:
        raise SeqlabError(f"unknown checkpoint {which!r}; choose one of {', '.join(WHICH)}")
    run = open_run(run_dir)
    config = run.read_config()
    tokenizer = load_tokenizer(run.tokenizer)
    weights = run.best if which == "best" and run.best.is_file() else run.model
    if not weights.is_file():
        raise SeqlabError(f"{run.path} has no trained weights yet (no {weights.name})")
    model = build_model(config.model, tokenizer.vocab_size, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                        eos_id=tokenizer.eos_id)
    from seqlab.compress.quantize import quantize_model, record_of

    if (record := record_of(weights)) is not None:  # an int8 run (seqlab quantize): int8 modules, then its tensors
        quantize_model(model, record["method"])
    load_weights(model, weights, hint=_other_weights(run, weights))
    device = resolve_device(device) if isinstance(device, str) else device
    return model.to(device).eval(), tokenizer, config


def _other_weights(run: RunDir, damaged: Path) -> str:
    """What to try when `damaged` (best or last weights of `run`) cannot be loaded."""
    if damaged == run.best:
        return "restore it or retrain; the last weights (model.safetensors, --checkpoint last) may still be good"
    alternatives = ["best.safetensors (--checkpoint best)"] if run.best.is_file() else []
    if run.trainer_state.with_suffix(".json").is_file():
        alternatives.append("the trainer state (seqlab train --resume)")
    return "restore it or retrain" + (f"; {' or '.join(alternatives)} may still be good" if alternatives else "")
