"""`seqlab train` (new runs and `--resume`) and `seqlab plot` (train/val loss curves of a run)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, SetOpt, print_json
from seqlab.config import Config, load_config
from seqlab.errors import SeqlabError
from seqlab.runs import MetricsLog, open_run


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("plot")(plot)


def train(
    config: str = typer.Argument(None, help="A preset name (see `seqlab config`) or a YAML path."),
    overrides: list[str] = SetOpt,
    out: Path = typer.Option(None, "--out", help="The new run directory (config, tokenizer, checkpoints, logs)."),
    resume: Path = typer.Option(None, "--resume", help="Continue this run from its last checkpoint, with its own config."),
    device: str = DeviceOpt,
    seed: int = typer.Option(None, "--seed", help="Random seed (default: the config's `seed`)."),
    as_json: bool = JsonOpt,
) -> None:
    """Train a model from a preset or YAML config (`--set` overrides), or `--resume RUN` exactly (seq2seq_* archs
    use the seq2seq recipe, the others the language-model one).

    Multi-GPU / multi-node: `torchrun --nproc_per_node=N -m seqlab train CONFIG --out RUN`.
    """
    cfg, run_dir = _resolve(config, overrides or [], out, resume, seed)
    if cfg.model.arch.startswith("seq2seq"):
        from seqlab.train.seq2seq import train_seq2seq as recipe
    else:
        from seqlab.train.lm import train_lm as recipe
    summary = recipe(cfg, run_dir, device, resume=resume is not None)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    if as_json:
        print_json(summary)
        return
    typer.echo(f"{summary['step']} steps in {summary['wall_s']:.1f} s ({summary['tokens_per_s']:,.0f} tokens/s): "
               f"best val loss {summary['best_val_loss']:.4f} (ppl {math.exp(min(summary['best_val_loss'], 700)):.2f}) "
               f"at step {summary['best_step']}; run in {summary['run']}")


def _resolve(config: str | None, overrides: list[str], out: Path | None, resume: Path | None,
             seed: int | None) -> tuple[Config, Path]:
    """The config and run directory of a new or resumed run, checking the combination of options."""
    from seqlab.train.state import has_checkpoint

    if resume is not None:
        if config is not None or overrides or out is not None:
            raise SeqlabError("--resume RUN continues with the run's own config: drop CONFIG, --set and --out")
        run = open_run(resume)
        if not has_checkpoint(run):
            raise SeqlabError(f"{str(resume)!r} has no checkpoint to resume from (no trainer_state.json)")
        cfg = run.read_config()
        if seed is not None and seed != cfg.seed:
            raise SeqlabError(f"--seed {seed} differs from the run's seed {cfg.seed}; a resumed run keeps its seed")
        return cfg, run.path
    if config is None:
        raise SeqlabError("give a CONFIG (a preset name or a YAML path) or --resume RUN")
    if out is None:
        raise SeqlabError("--out RUN is required: the directory the run is written to")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        hint = "; continue it with --resume" if (out / "config.yaml").is_file() else ""
        raise SeqlabError(f"--out {str(out)!r} already exists and is not an empty directory{hint}")
    cfg = load_config(config, overrides)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    return cfg, out


def plot(
    run: Path = typer.Argument(..., help="A run directory."),
    out: Path = typer.Option(None, "--out", help="PNG to write (default: RUN/loss.png)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write a PNG of the run's train and validation loss curves (from metrics.jsonl)."""
    from seqlab.eval.plots import plot_loss_curves

    run_dir = open_run(run)
    rows = MetricsLog(run_dir.metrics).read()
    if not any("train_loss" in r or "val_loss" in r for r in rows):
        raise SeqlabError(f"{str(run)!r} has no logged losses yet (metrics.jsonl is empty or missing)")
    path = out or run_dir.path / "loss.png"
    if path.suffix.lower() != ".png":
        raise SeqlabError(f"--out must be a .png file, got {str(path)!r}")
    plot_loss_curves(rows, path)
    if as_json:
        print_json({"plot": str(path)})
    else:
        typer.echo(f"wrote {path}")
