"""`seqlab prune`: magnitude-prune a trained run into a new run, then optionally fine-tune it."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, print_json
from seqlab.errors import SeqlabError


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)


def prune(
    run: Path = typer.Argument(..., help="The trained run directory to prune (it is not changed)."),
    out: Path = typer.Option(..., "--out", help="The new run directory of the pruned model (must not exist)."),
    amount: float = typer.Option(..., "--amount", help="The fraction to prune, in (0, 1): of each weight matrix's "
                                 "entries (unstructured), of each attention's heads (--structured heads) or of each "
                                 "layer's hidden units (--structured neurons)."),
    structured: str = typer.Option(None, "--structured", help="heads (Transformers) | neurons (Transformer MLPs, "
                                   "recurrent units of RNN models): remove whole units so the tensors shrink. "
                                   "Default: unstructured (zeros, same shapes)."),
    finetune_steps: int = typer.Option(0, "--finetune-steps", help="Then fine-tune the pruned model this many steps "
                                       "on the run's own training data with the run's trainer (0 = no fine-tuning)."),
    finetune_lr: float = typer.Option(None, "--finetune-lr", help="Fine-tuning's peak learning rate (default: the "
                                      "run's train.lr / 10)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to prune: best | last."),
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Prune RUN into the new run OUT by weight magnitude, and report parameters, file size and val perplexity.

    Unstructured (default): the --amount fraction of smallest-magnitude entries of every weight matrix (Linear
    layers, recurrent W_ih / W_hh; each matrix alike) becomes 0; embeddings, biases and LayerNorms are kept.
    The shapes stay, so the run is no smaller and no faster on dense kernels: only the zeros change.
    --structured heads drops the lowest-norm attention heads (the same number in every attention; model.n_head
    shrinks, model.head_dim is kept); --structured neurons drops MLP hidden units (model.mlp_width) or the
    recurrent units of an RNN model, encoder and decoder alike (model.hidden_size). These shrink the tensors,
    the file and the time per token.

    OUT is an ordinary run (config.yaml with the new sizes, tokenizer, weights) for generate, chat, eval and
    serve. With --finetune-steps N the pruned model trains N steps on RUN's training data with `seqlab train`'s
    trainer (OUT then holds its checkpoint and metrics; `seqlab train --resume OUT` continues it); after
    unstructured pruning the zeros stay zero (train.keep_zeros). Val perplexity is reported for RUN, the
    pruned model and the fine-tuned one, on RUN's val split.

    Example: seqlab prune runs/shakespeare --out runs/shakespeare-heads50 --amount 0.5 --structured heads
    --finetune-steps 200
    """
    from seqlab.compress.prune import check_amount, kept_units
    from seqlab.models.loading import load_model_from_run
    from seqlab.runs import open_run

    check_amount(amount)
    if finetune_steps < 0:
        raise SeqlabError(f"--finetune-steps must be >= 0 (0 = no fine-tuning), got {finetune_steps}")
    if finetune_lr is not None and not (finetune_lr > 0 and math.isfinite(finetune_lr)):
        raise SeqlabError(f"--finetune-lr must be a positive number, got {finetune_lr}")
    source = open_run(run)
    if out.exists():
        raise SeqlabError(f"--out {str(out)!r} already exists; choose a new directory for the pruned run")
    config = source.read_config()
    if structured is not None:
        kept_units(config.model, amount, structured)  # refuses what cannot be pruned, before any work
    model, tokenizer, config = load_model_from_run(run, device, checkpoint)
    summary = prune_to_run(model, tokenizer, config, source.path, out, amount, structured, finetune_steps,
                           finetune_lr, checkpoint)
    if as_json:
        print_json(summary)
        return
    _print_report(summary)


def prune_to_run(model: torch.nn.Module, tokenizer: Any, config: Any, source: Path, out: Path, amount: float,
                 structured: str | None, finetune_steps: int, finetune_lr: float | None,
                 checkpoint: str) -> dict[str, Any]:
    """Prune `model` (of the run at `source`) into the new run `out`, fine-tune it if asked; the summary."""
    from seqlab.compress.prune import prune as prune_model
    from seqlab.compress.prune import sparsity
    from seqlab.runs import RunDir

    device = next(model.parameters()).device
    val = _val_split(config, tokenizer)
    weights = RunDir(source).best if checkpoint == "best" and RunDir(source).best.is_file() else RunDir(source).model
    pruned, model_cfg = prune_model(model, config.model, amount, structured)
    pruned_config = dataclasses.replace(config, model=model_cfg)
    record = {"run": str(source.resolve()), "weights": weights.name, "amount": amount,
              "structured": structured or "none"}
    summary: dict[str, Any] = {
        "run": str(source), "out": str(out), "method": structured or "unstructured", "amount": amount,
        "model": {key: [getattr(config.model, key), value] for key, value in dataclasses.asdict(model_cfg).items()
                  if getattr(config.model, key) != value},
        "parameters": {"before": _count(model), "after": _count(pruned)},
        "nonzero_parameters": {"before": _count(model, nonzero=True), "after": _count(pruned, nonzero=True)},
        "sparsity": sparsity(pruned),
        "val_ppl": {"original": _val_ppl(model, config, val, tokenizer, device),
                    "pruned": _val_ppl(pruned, pruned_config, val, tokenizer, device)},
    }
    if finetune_steps == 0:
        _write_pruned_run(out, pruned_config, source, pruned, record)
        written = RunDir(out).model
    else:
        with _staging(out) as stage:
            _write_pruned_run(stage, pruned_config, source, pruned, record)
            tuned = _finetune(stage, out, pruned_config, finetune_steps, finetune_lr, structured is None,
                              str(device))
        _record(RunDir(out), record | {"finetune_steps": finetune_steps})
        written = RunDir(out).best if RunDir(out).best.is_file() else RunDir(out).model
        summary["val_ppl"]["finetuned"] = _val_ppl(tuned, pruned_config, val, tokenizer, device)
        summary["finetune_steps"] = finetune_steps
        summary["sparsity_after_finetune"] = sparsity(tuned)
    summary["file_bytes"] = {"before": weights.stat().st_size, "after": written.stat().st_size}
    return summary


def _count(model: torch.nn.Module, nonzero: bool = False) -> int:
    """Parameters (a tied one once), or only the nonzero ones."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(int((p != 0).sum()) if nonzero else p.numel() for p in unique)


def _val_split(config: Any, tokenizer: Any) -> Any:
    """The run's val split (its own tokenizer), as the trainer scores it."""
    from seqlab.data.prepare import prepare_data

    return prepare_data(config.data, config.seed, tokenizer=copy.deepcopy(tokenizer)).splits["val"]


@torch.inference_mode()
def _val_ppl(model: torch.nn.Module, config: Any, val: Any, tokenizer: Any, device: torch.device) -> float:
    """exp(mean NLL per token) of `model` on the val split: the stream in windows, or the pairs teacher-forced."""
    from seqlab.eval.perplexity import lm_nll, pairs_nll

    batch_size = config.train.batch_size
    if val.ids is not None:
        nll = lm_nll(model, val.ids, config.model.context_length, batch_size, device)
    else:
        from seqlab.train.seq2seq import fit_lengths

        pairs = fit_lengths(val.pairs, getattr(model, "max_length", None))
        nll = pairs_nll(model, pairs, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, batch_size, device)
    return math.exp(min(nll, 700.0))


def _write_pruned_run(path: Path, config: Any, source: Path, model: torch.nn.Module, record: dict) -> None:
    """A run directory: config.yaml with the pruned sizes, the source's tokenizer, the weights, run.json."""
    from seqlab.checkpoint import save_weights
    from seqlab.runs import RunDir

    run = RunDir(path)
    path.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    shutil.copyfile(RunDir(source).tokenizer, run.tokenizer)
    save_weights(model, run.model, metadata={"pruned_from": record["run"]})
    run.write_info(config.seed, {"pruned_from": record})


def _record(run: Any, record: dict) -> None:
    """run.json of a fine-tuned pruned run: where it was pruned from (not the staging run it started from)."""
    from seqlab.io import read_json, write_json

    info = read_json(run.info)
    info.pop("init_from", None)
    write_json(run.info, info | {"pruned_from": record})


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary sibling of `out` for the pruned run that fine-tuning starts from; removed afterwards."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".pruned", dir=out.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _finetune(stage: Path, out: Path, config: Any, steps: int, lr: float | None, keep_zeros: bool,
              device: str) -> torch.nn.Module:
    """Train the pruned run at `stage` for `steps` steps into `out` with its recipe; the best model."""
    from seqlab.cli.train import _check_new_run_dir
    from seqlab.models.loading import load_model_from_run
    from seqlab.train.interrupt import exit_on_interrupt
    from seqlab.train.run_lock import hold_run_lock

    train = config.train
    lr = train.lr / 10 if lr is None else lr
    train = dataclasses.replace(train, max_steps=steps, lr=lr, min_lr=min(train.min_lr, lr / 10),
                                warmup_steps=min(train.warmup_steps, steps // 10),
                                eval_interval=min(train.eval_interval, steps), keep_zeros=keep_zeros)
    config = dataclasses.replace(config, train=train)
    if config.model.arch.startswith("seq2seq"):
        from seqlab.train.seq2seq import train_seq2seq as recipe
    else:
        from seqlab.train.lm import train_lm as recipe
    with hold_run_lock(out, "--out"):
        _check_new_run_dir(out)
        with exit_on_interrupt():  # Ctrl-C / SIGTERM: checkpoint, one line, exit 130 / 143
            recipe(config, out, device, init_from=stage)
    model, _, _ = load_model_from_run(out, device)
    return model


def _print_report(s: dict[str, Any]) -> None:
    params, nonzero, size, ppl = s["parameters"], s["nonzero_parameters"], s["file_bytes"], s["val_ppl"]
    typer.echo(f"pruned {s['run']} -> {s['out']} ({s['method']}, amount {s['amount']:g})")
    for key, (before, after) in s["model"].items():
        typer.echo(f"  model.{key}: {before} -> {after}")
    zeros = "" if s["method"] != "unstructured" else f", {s['sparsity']:.1%} of the prunable matrices are zero"
    typer.echo(f"  parameters: {params['before']:,} -> {params['after']:,} ({nonzero['after']:,} nonzero{zeros})")
    typer.echo(f"  weights file: {size['before']:,} -> {size['after']:,} bytes")
    line = f"  val perplexity: {ppl['original']:.3f} (original), {ppl['pruned']:.3f} (pruned)"
    if "finetuned" in ppl:
        line += f", {ppl['finetuned']:.3f} (after {s['finetune_steps']} fine-tuning steps)"
        if s["method"] == "unstructured":
            line += f"; still {s['sparsity_after_finetune']:.1%} zero"
    typer.echo(line)
