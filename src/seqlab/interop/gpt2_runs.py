"""A Hugging Face GPT-2 folder <-> a seqlab run directory (what `seqlab import-hf` / `export-hf` do).

A GPT-2 folder is what `save_pretrained` writes: `config.json` + `model.safetensors` (no pickled
`pytorch_model.bin`), and the tokenizer files of `GPT2TokenizerFast.save_pretrained`. A run gets
`config.yaml` (model: transformer_lm with GPT-2's settings), `tokenizer.json` (byte-level BPE keeping
GPT-2's ids), `model.safetensors` and `run.json`. Both directories appear whole or not at all: they
are written into a temporary sibling, then renamed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqlab.checkpoint import save_weights
from seqlab.config import Config, DataConfig, ModelConfig
from seqlab.data.tokenizers import BPETokenizer
from seqlab.errors import SeqlabError
from seqlab.interop.gpt2 import from_hf_gpt2, to_hf_gpt2
from seqlab.io import _umask
from seqlab.models.loading import load_model_from_run
from seqlab.runs import RunDir


def import_hf_gpt2(folder: str | Path, out: str | Path) -> dict[str, Any]:
    """Turn the GPT-2 folder `folder` into a seqlab run at `out`; returns a summary."""
    folder = Path(folder)
    _check_new_directory(out)
    hf_model = _load_hf_gpt2(folder)
    model = from_hf_gpt2(hf_model).float()
    tokenizer = BPETokenizer.from_hf_files(folder)
    if tokenizer.vocab_size != model.vocab_size:
        raise SeqlabError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                          f"{model.vocab_size}; they must match")
    config = Config(
        data=DataConfig(tokenizer="bpe", vocab_size=tokenizer.vocab_size),
        model=ModelConfig(arch="transformer_lm", n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd,
                          context_length=model.context_length, dropout=model.dropout, positions="learned",
                          activation=model.activation, bias=True, tie_embeddings=model.tie_embeddings))
    with _new_directory(out) as tmp:
        run = RunDir(tmp)
        run.write_config(config)
        tokenizer.save(run.tokenizer)
        save_weights(model, run.model)
        run.write_info(config.seed, {"imported_from": str(folder.resolve())})
    return {"run": str(out), "source": str(folder), **_summary(model)}


def export_hf_gpt2(run_dir: str | Path, out: str | Path, which: str = "best") -> dict[str, Any]:
    """Write the run's Transformer LM (and its BPE tokenizer) as a GPT-2 folder at `out`; returns a summary."""
    _check_new_directory(out)
    model, tokenizer, config = load_model_from_run(run_dir, "cpu", which)
    from seqlab.compress.quantize import is_int8

    if is_int8(model):
        raise SeqlabError(f"{run_dir} is an int8 run (seqlab quantize); GPT-2 folders hold float weights: "
                          "export the run it was quantized from")
    if config.model.arch != "transformer_lm":
        raise SeqlabError(f"only transformer_lm runs can become a GPT-2; {run_dir} holds a {config.model.arch}: "
                          "train one with --set model.arch=transformer_lm --set model.positions=learned "
                          "--set model.activation=gelu_new")
    try:
        hf_model = to_hf_gpt2(model, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    except SeqlabError as e:
        raise SeqlabError(f"{run_dir}: {e}") from None
    with _new_directory(out) as tmp, _quiet_transformers():  # no progress bar on stderr
        hf_model.save_pretrained(tmp)
        if isinstance(tokenizer, BPETokenizer):
            tokenizer.save_hf_files(tmp)
    tokenizer_note = "exported" if isinstance(tokenizer, BPETokenizer) else (
        f"not exported (a {tokenizer.kind} tokenizer has no Hugging Face GPT-2 equivalent)")
    return {"run": str(run_dir), "out": str(out), "tokenizer": tokenizer_note, **_summary(model)}


def _load_hf_gpt2(folder: Path) -> Any:
    if not folder.is_dir():
        raise SeqlabError(f"{str(folder)!r} is not a directory (expected a Hugging Face GPT-2 folder)")
    if not (folder / "config.json").is_file():
        raise SeqlabError(f"{folder} has no config.json; is it a folder written by save_pretrained?")
    if not (folder / "model.safetensors").is_file():
        raise SeqlabError(f"{folder} has no model.safetensors (seqlab reads safetensors weights only, never pickles)")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise SeqlabError(f"{folder}/config.json is not a JSON object") from None
    if model_type != "gpt2":
        raise SeqlabError(f"{folder} holds a {model_type!r} model; only GPT-2 (model_type 'gpt2') can be imported")
    from safetensors import SafetensorError
    from transformers import GPT2LMHeadModel

    with _quiet_transformers():
        try:
            return GPT2LMHeadModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SeqlabError(f"{folder}: cannot load the GPT-2 weights ({first})") from None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars or warnings from transformers while loading: stderr is for seqlab's errors."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _new_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to fill; renamed to `target` only when the block succeeds."""
    target = Path(target)
    _check_new_directory(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
    try:
        yield tmp
        if target.exists():
            target.rmdir()  # empty, checked above
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_new_directory(target: str | Path) -> None:
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SeqlabError(f"{target} already exists and is not empty; choose a new directory")


def _summary(model: Any) -> dict[str, Any]:
    return {"n_layer": model.n_layer, "n_head": model.n_head, "n_embd": model.n_embd,
            "context_length": model.context_length, "vocab_size": model.vocab_size,
            "parameters": sum(p.numel() for p in model.parameters())}
