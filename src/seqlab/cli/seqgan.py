"""`seqlab seqgan`: the SeqGAN paper's synthetic-oracle table in one command, SeqGAN on real text, sampling."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, SeedOpt, print_json
from seqlab.errors import ConfigError

seqgan_app = typer.Typer(help="SeqGAN (Yu et al. 2017): the synthetic-oracle experiment and training on real text.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(seqgan_app, name="seqgan")


MethodsOpt = typer.Option(None, "--methods", help="Methods to run (repeatable or comma-separated): "
                          "random, mle, ss, pg_bleu, seqgan (default: all).")
SetProtocolOpt = typer.Option(None, "--set", help="Override a protocol field, e.g. --set adv_rounds=50 (repeatable).")


@seqgan_app.command("oracle")
def oracle(
    out: Path = typer.Option(..., "--out", help="Run directory (created; an existing one is resumed)."),
    preset: str = typer.Option("paper", "--preset", help="paper (the authors' protocol) or small (2-core CPU)."),
    seeds: int = typer.Option(1, "--seeds", help="Run seeds 0..N-1 and report mean ± std."),
    methods: list[str] = MethodsOpt,
    oracle_path: Path = typer.Option(None, "--oracle", help="Oracle parameters (.npz); default "
                                     "$SEQLAB_DATA/seqgan_oracle_params.npz, else a seeded N(0,1) oracle."),
    rollout_rate: float = typer.Option(None, "--rollout-rate", help="Delayed-copy rate r of the rollout policy "
                                       "(0 = current G, as the authors' code ran; 0.8 = the paper's text)."),
    rollouts: int = typer.Option(None, "--rollouts", help="Monte Carlo rollouts per prefix (default: the preset's)."),
    generator: str = typer.Option(None, "--generator", help="lstm (the protocol's) or transformer."),
    compile_d: bool = typer.Option(False, "--compile", help="torch.compile the discriminator (CUDA graphs on GPU)."),
    overrides: list[str] = SetProtocolOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Reproduce Table 1 of the SeqGAN paper: NLL-oracle of Random, MLE, SS, PG-BLEU and SeqGAN.

    Writes OUT/table.json and OUT/learning_curve.png; each method of each seed is resumable from OUT.
    """
    from seqlab.device import resolve_device
    from seqlab.train.interrupt import exit_on_interrupt
    from seqlab.train.seqgan_table import build_table, plot_curves, resolve_protocol, run_oracle_table

    chosen = _methods(methods)
    protocol = resolve_protocol(preset, overrides or [], rollout_rate=rollout_rate, num_rollouts=rollouts,
                                generator=generator, compile=compile_d or None)
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    dev = resolve_device(device)
    from seqlab.io import write_json
    from seqlab.train.run_lock import hold_run_lock

    with hold_run_lock(out), exit_on_interrupt():  # one process at a time in OUT; Ctrl-C / SIGTERM: exit 130 / 143
        results, oracle_source, seconds = run_oracle_table(protocol, preset, out, seeds, chosen, oracle_path, dev,
                                                           show_progress=True)
        table = build_table(results, preset, protocol, oracle_source, str(dev), seconds)
        write_json(out / "table.json", table)
        plot_curves(results, protocol, out / "learning_curve.png")
    if as_json:
        print_json(table)
    else:
        _print_table(table, out)


def _methods(methods: list[str] | None) -> list[str]:
    from seqlab.train.seqgan import METHODS

    chosen = [m.strip() for item in (methods or []) for m in item.split(",") if m.strip()] or list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    return [m for m in METHODS if m in chosen]


def _print_table(table: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = Table(title=f"SeqGAN synthetic oracle, NLL-oracle (lower is better) — preset {table['preset']}, "
                       f"seeds {len(table['seeds'])}")
    for col in ("method", "seqlab", "paper", "wall s"):
        rows.add_column(col, justify="left" if col == "method" else "right")
    for name, row in table["methods"].items():
        value = f"{row['nll_oracle']:.3f}" + (f" ± {row['std']:.3f}" if len(table["seeds"]) > 1 else "")
        rows.add_row(name, value, f"{table['paper'][name]:.3f}", f"{row['wall_s']:.0f}")
    console = Console()
    console.print(rows)
    console.print(f"oracle: {table['oracle']}; wrote {out / 'table.json'} and {out / 'learning_curve.png'}")


@seqgan_app.command("train")
def train(
    data: str = typer.Option(..., "--data", help="A built-in corpus name (e.g. tang300) or a file."),
    out: Path = typer.Option(..., "--out", help="Run directory (created; an existing one is resumed)."),
    max_len: int = typer.Option(64, "--max-len", help="Tokens per sequence (with <eos>); shorter texts are padded."),
    longer: str = typer.Option("error", "--longer", help="A text longer than --max-len: error, truncate or drop."),
    tokenizer: str = typer.Option("char", "--tokenizer", help="char or word."),
    pretrain_epochs: int = typer.Option(80, "--pretrain-epochs", help="MLE pre-training epochs of G."),
    d_pretrain_iters: int = typer.Option(10, "--d-pretrain-iters", help="D pre-training iterations."),
    adv_rounds: int = typer.Option(50, "--adv-rounds", help="Adversarial rounds."),
    rollouts: int = typer.Option(16, "--rollouts", help="Monte Carlo rollouts per prefix."),
    rollout_rate: float = typer.Option(0.0, "--rollout-rate", help="Delayed-copy rate r of the rollout policy."),
    generator: str = typer.Option("lstm", "--generator", help="lstm or transformer."),
    size: int = typer.Option(64, "--size", help="G's embedding and hidden size (LSTM) / width (Transformer)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Held-out fraction for BLEU."),
    samples: int = typer.Option(200, "--samples", help="Generated texts scored by BLEU and self-BLEU."),
    batch_size: int = typer.Option(64, "--batch-size", help="Sequences per G / D step (the protocol's 64)."),
    checkpoint_every: float = typer.Option(60.0, "--checkpoint-every", help="Seconds between checkpoints (also "
                                           "saved at the end of each phase and on Ctrl-C / SIGTERM)."),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train SeqGAN on a real corpus (one text per sequence) and compare MLE vs SeqGAN by BLEU-2..5 and self-BLEU."""
    from seqlab.device import resolve_device
    from seqlab.train.interrupt import exit_on_interrupt
    from seqlab.train.seqgan_text import TextSeqganConfig, train_text_seqgan

    cfg = TextSeqganConfig(data=data, max_len=max_len, longer=longer, tokenizer=tokenizer, batch_size=batch_size,
                           pretrain_epochs=pretrain_epochs, d_pretrain_iters=d_pretrain_iters, adv_rounds=adv_rounds,
                           num_rollouts=rollouts, rollout_rate=rollout_rate, generator=generator, size=size,
                           val_fraction=val_fraction, eval_samples=samples, seed=seed,
                           checkpoint_every_s=checkpoint_every)
    from seqlab.train.run_lock import hold_run_lock

    with hold_run_lock(out), exit_on_interrupt():  # one process at a time in OUT; Ctrl-C / SIGTERM: exit 130 / 143
        report = train_text_seqgan(cfg, out, resolve_device(device), show_progress=True)
    if as_json:
        print_json(report)
        return
    typer.echo(f"{'':8s} " + " ".join(f"{k:>8s}" for k in ("bleu2", "bleu3", "bleu4", "bleu5", "self_bleu")))
    for name in ("mle", "seqgan"):
        row = report[name]
        typer.echo(f"{name:8s} " + " ".join(f"{row[k]:8.2f}" for k in ("bleu2", "bleu3", "bleu4", "bleu5",
                                                                       "self_bleu")))
    for text in report["samples"][:5]:
        typer.echo(f"  {text}")


@seqgan_app.command("sample")
def sample(
    run: Path = typer.Argument(..., help="A run directory written by `seqlab seqgan train`."),
    n: int = typer.Option(5, "-n", "--num", help="How many texts."),
    which: str = typer.Option("seqgan", "--model", help="seqgan (after adversarial training) or mle."),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Sample texts from a SeqGAN run's generator."""
    from seqlab.device import resolve_device, seed_everything
    from seqlab.train.seqgan_text import sample_texts

    if n < 1:
        raise ConfigError(f"--num must be >= 1, got {n}")
    seed_everything(seed)
    texts = sample_texts(run, n, which, resolve_device(device))
    if as_json:
        print_json({"samples": texts})
    else:
        sys.stdout.write("".join(t + "\n" for t in texts))
