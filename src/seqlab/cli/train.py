"""`seqlab train` (new runs and `--resume`) and `seqlab plot` (train/val loss curves of a run)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, SetOpt, print_json
from seqlab.config import Config, load_config, parse_overrides
from seqlab.errors import SeqlabError
from seqlab.runs import MetricsLog, open_run


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("plot")(plot)


def train(
    preset: str = typer.Argument(None, help="A preset name (see `seqlab config`) or a YAML path."),
    overrides: list[str] = SetOpt,
    out: Path = typer.Option(None, "--out", help="The new run directory (config, tokenizer, checkpoints, logs)."),
    resume: Path = typer.Option(None, "--resume", help="Continue this run from its last checkpoint, with its own "
                                "config (--set train.max_steps=N alone may change: continue a finished run)."),
    init_from: Path = typer.Option(None, "--init-from", help="Start the new run from this run's weights (best, else "
                                   "last) and tokenizer, with a fresh optimizer: fine-tuning on another corpus."),
    device: str = DeviceOpt,
    seed: int = typer.Option(None, "--seed", help="Random seed (default: the config's `seed`)."),
    as_json: bool = JsonOpt,
) -> None:
    """Train a model from a preset or YAML config (`--set` overrides), or `--resume RUN` exactly (seq2seq_* archs
    use the seq2seq recipe, the others the language-model one).

    `--resume RUN --set train.max_steps=N` continues a finished run for more steps (the learning rate stays at
    train.min_lr after the old end); a run killed before its first checkpoint starts again from step 0.
    `PRESET --init-from RUN --set data.corpus=NEW --out NEW_RUN` fine-tunes RUN's weights on NEW.
    A process trains in a run directory alone (RUN/.lock).

    Multi-GPU / multi-node: `torchrun --nproc_per_node=N -m seqlab train PRESET --out RUN`.
    """
    from seqlab.train.interrupt import exit_on_interrupt
    from seqlab.train.run_lock import hold_run_lock

    overrides = overrides or []
    if resume is not None:
        _check_resume_options(preset, overrides, out, init_from, resume)
        run_dir, option = resume, "--resume"
    else:
        cfg = _new_run_config(preset, overrides, out, init_from, seed)
        run_dir, option = out, "--out"
    with hold_run_lock(run_dir, option):
        if resume is not None:
            cfg = _resume_config(resume, overrides, seed)
        else:
            _check_new_run_dir(out)
        if cfg.model.arch.startswith("seq2seq"):
            from seqlab.train.seq2seq import train_seq2seq as recipe
        else:
            from seqlab.train.lm import train_lm as recipe
        with exit_on_interrupt():  # Ctrl-C / SIGTERM: checkpoint, one line, exit 130 / 143
            summary = recipe(cfg, run_dir, device, resume=resume is not None, init_from=init_from)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    if as_json:
        print_json(summary)
        return
    typer.echo(f"{summary['step']} steps in {summary['wall_s']:.1f} s ({summary['tokens_per_s']:,.0f} tokens/s): "
               f"best val loss {summary['best_val_loss']:.4f} (ppl {math.exp(min(summary['best_val_loss'], 700)):.2f}) "
               f"at step {summary['best_step']}; run in {summary['run']}")


RESUMABLE_KEYS = ("train.max_steps",)  # what `--resume RUN --set` may change (see seqlab.train.fingerprint)
PREPARED_ONLY = {".lock", "prepared", "tokenizer.json"}  # what `seqlab data prepare --out RUN` leaves in RUN


def _check_resume_options(preset: str | None, overrides: list[str], out: Path | None, init_from: Path | None,
                          resume: Path) -> None:
    """The options `--resume RUN` takes, checked before the run is locked (RUN must exist: it is not created)."""
    if preset is not None or out is not None:
        raise SeqlabError("--resume RUN continues with the run's own config: drop PRESET and --out")
    if init_from is not None:
        raise SeqlabError("--init-from starts a new run: give PRESET --init-from RUN --out NEW_RUN, without --resume")
    others = [k for k in _keys(parse_overrides(overrides)) if k not in RESUMABLE_KEYS]
    if others:
        raise SeqlabError(f"--resume RUN continues with the run's own config; --set {others[0]} cannot change on "
                          "resume (only --set train.max_steps=N can, to train a run for longer); for other changes "
                          f"start a new run from its weights: seqlab train {resume / 'config.yaml'} --init-from "
                          f"{resume} --set {others[0]}=... --out NEW_RUN")
    open_run(resume)


def _keys(tree: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a nested mapping: {"train": {"lr": 1}} -> ["train.lr"]."""
    return [k for key, value in tree.items()
            for k in (_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])]


def _resume_config(resume: Path, overrides: list[str], seed: int | None) -> Config:
    """The run's config (with a new train.max_steps), checked against its fingerprint; the run is locked."""
    from seqlab.train.fingerprint import check_fingerprint
    from seqlab.train.state import has_checkpoint

    run = open_run(resume)
    cfg = run.read_config()
    if seed is not None and seed != cfg.seed:
        raise SeqlabError(f"--seed {seed} differs from the run's seed {cfg.seed}; a resumed run keeps its seed")
    if has_checkpoint(run):
        check_fingerprint(run, cfg)
    elif int(os.environ.get("RANK", "0")) == 0:
        kept = " and tokenizer.json" if run.tokenizer.is_file() else ""
        typer.echo(f"{resume} has no checkpoint (it stopped before its first evaluation at step "
                   f"{cfg.train.eval_interval}): training it again from step 0 with its config.yaml{kept}", err=True)
    if overrides:
        cfg = load_config(base=cfg.to_dict(), overrides=overrides)
    return cfg


def _new_run_config(preset: str | None, overrides: list[str], out: Path | None, init_from: Path | None,
                    seed: int | None) -> Config:
    """The config of a new run, checking the options (and --init-from's run) before anything is created."""
    if preset is None:
        raise SeqlabError("give a PRESET (a preset name or a YAML path) or --resume RUN")
    if out is None:
        raise SeqlabError("--out RUN is required: the directory the run is written to")
    if out.exists() and not out.is_dir():
        raise SeqlabError(f"--out {str(out)!r} is a file, not a run directory; choose another path")
    cfg = load_config(preset, overrides)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    if init_from is not None:
        _check_init_from(init_from, cfg, out)
    return cfg


def _check_init_from(source: Path, cfg: Config, out: Path) -> None:
    """--init-from RUN: a run with a tokenizer and weights, of the same model as `cfg`'s."""
    from seqlab.train.trainable import init_weights

    run = open_run(source)
    if out.resolve() == run.path.resolve():
        raise SeqlabError("--init-from RUN starts a new run: --out must be another directory (or --resume RUN)")
    if not run.tokenizer.is_file():
        raise SeqlabError(f"--init-from {str(source)!r} has no tokenizer.json; give a run written by `seqlab train`")
    if not init_weights(source).is_file():
        raise SeqlabError(f"--init-from {str(source)!r} has no trained weights yet (no best.safetensors or "
                          "model.safetensors); let it reach its first evaluation")
    theirs, ours = dataclasses.asdict(run.read_config().model), dataclasses.asdict(cfg.model)
    differ = [k for k in ours if k != "dropout" and theirs.get(k) != ours[k]]
    if differ:
        shown = "; ".join(f"model.{k} {ours[k]!r} here, {theirs.get(k)!r} there" for k in differ)
        raise SeqlabError(f"--init-from {str(source)!r}: its weights fit only the same model, and this config's "
                          f"differs ({shown}); set them as in {run.config} (--set model.{differ[0]}="
                          f"{theirs.get(differ[0])} ...)")


def _check_new_run_dir(out: Path) -> None:
    """`--out` must be new, empty or hold only prepared data; the directory is locked by this process."""
    from seqlab.train.state import has_checkpoint

    if not out.is_dir():
        return  # under torchrun a rank other than 0 may get here before rank 0 made the directory
    names = {p.name for p in out.iterdir()}
    if names <= PREPARED_ONLY:
        return
    run = open_run(out, must_exist=False)
    if "config.yaml" in names and not has_checkpoint(run):
        raise SeqlabError(f"--out {str(out)!r} holds a run that stopped before its first checkpoint (config.yaml, "
                          f"no trainer_state.json); continue it with `seqlab train --resume {out}` (it starts "
                          "again from step 0 with its own config), or delete the directory to start afresh")
    if "config.yaml" in names:
        raise SeqlabError(f"--out {str(out)!r} already holds a run; continue it with `seqlab train --resume {out}` "
                          f"(`--set train.max_steps=N` to train a finished run longer), or choose another --out")
    raise SeqlabError(f"--out {str(out)!r} already exists and is not an empty directory (it holds "
                      f"{', '.join(sorted(names - PREPARED_ONLY)[:3])}); choose another --out")


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
