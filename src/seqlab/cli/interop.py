"""`seqlab import-hf` / `seqlab export-hf`: Hugging Face GPT-2 folders <-> seqlab runs."""

from __future__ import annotations

from pathlib import Path

import typer

from seqlab.cli.options import JsonOpt, print_json
from seqlab.errors import SeqlabError


def register(app: typer.Typer) -> None:
    app.command("import-hf")(import_hf)
    app.command("export-hf")(export_hf)


def import_hf(
    folder: Path = typer.Argument(..., help="A local Hugging Face GPT-2 folder (config.json, model.safetensors, "
                                  "tokenizer files), as save_pretrained writes it."),
    out: Path = typer.Option(None, "--out", help="The seqlab run directory to create (required; must be new)."),
    as_json: bool = JsonOpt,
) -> None:
    """Turn a local Hugging Face GPT-2 folder into a seqlab run that `seqlab generate` can use."""
    from seqlab.interop.gpt2_runs import import_hf_gpt2

    if out is None:
        raise SeqlabError("give the run directory to create with --out RUN")
    _report(import_hf_gpt2(folder, out), as_json, f"imported {folder} -> run {out}")


def export_hf(
    run: Path = typer.Argument(..., help="A seqlab run directory holding a transformer_lm with GPT-2's architecture."),
    out: Path = typer.Option(None, "--out", help="The Hugging Face folder to create (required; must be new)."),
    which: str = typer.Option("best", "--which", help="best (best.safetensors when present) | last (model.safetensors)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write a seqlab Transformer LM run as a Hugging Face GPT-2 folder (GPT2LMHeadModel.from_pretrained loads it)."""
    from seqlab.interop.gpt2_runs import export_hf_gpt2

    if out is None:
        raise SeqlabError("give the folder to create with --out DIR")
    _report(export_hf_gpt2(run, out, which), as_json, f"exported run {run} -> {out}")


def _report(summary: dict, as_json: bool, headline: str) -> None:
    if as_json:
        print_json(summary)
        return
    typer.echo(headline)
    typer.echo(f"  GPT-2: {summary['n_layer']} layers, {summary['n_head']} heads, {summary['n_embd']} wide, "
               f"context {summary['context_length']}, vocab {summary['vocab_size']}, "
               f"{summary['parameters']:,} parameters")
    if "tokenizer" in summary:
        typer.echo(f"  tokenizer: {summary['tokenizer']}")
