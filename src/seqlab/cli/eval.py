"""`seqlab eval RUN`: perplexity on held-out references, then generation scored with BLEU, ROUGE, distinct-n."""

from __future__ import annotations

from typing import Any

import typer

from seqlab.cli.decode_options import DECODING, decode_options
from seqlab.cli.options import DeviceOpt, JsonOpt, SeedOpt, print_json
from seqlab.errors import SeqlabError
from seqlab.eval.run_eval import evaluate_run

SPLITS = ("test", "val", "all")
SHOWN_EXAMPLES = 3


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


@decode_options("max_new_tokens", "do_sample", "num_beams", "temperature", "top_k", "top_p", "repetition_penalty",
                "no_repeat_ngram_size", defaults={"do_sample": False, "num_beams": 1},
                notes={"max_new_tokens": "Default here: data.max_target_len for pairs, 64 for language models "
                                         "(eval ignores decode.max_new_tokens)."})
def evaluate(
    run: str = typer.Argument(..., help="A run directory (from `seqlab train`)."),
    data: str = typer.Option(None, "--data", help="Another corpus (built-in name or file) to evaluate on, "
                             "tokenized with the run's tokenizer (default: the run's own corpus)."),
    split: str = typer.Option(None, "--split", help="test | val | all (default: test when the run's data has one, "
                              "else val; all with --data)."),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first N examples (language models: N prompts and "
                              "the first N context windows)."),
    decoding: dict = DECODING,
    lang: str = typer.Option(None, "--lang", help="en | zh for BLEU/ROUGE tokens (default: the run's data.lang, "
                             "or detected from the references)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Examples per forward pass."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to load: best | last."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
) -> None:
    """Evaluate a trained run: perplexity of the references (teacher-forced), then greedy generations (or as
    the decoding flags say) scored against them. JSON keys: perplexity, bleu, rouge1, rouge2, rougeL,
    distinct1, distinct2, self_bleu, avg_len, examples."""
    from seqlab.device import resolve_device, seed_everything
    from seqlab.models.loading import load_model_from_run

    if split is not None and split not in SPLITS:
        raise SeqlabError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise SeqlabError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise SeqlabError(f"--batch-size must be >= 1, got {batch_size}")
    if lang is not None and lang not in ("en", "zh"):
        raise SeqlabError(f"--lang must be en or zh, got {lang!r}")
    seed_everything(seed)
    model, tokenizer, config = load_model_from_run(run, resolve_device(device), which=checkpoint)
    if data is None:
        _check_run_corpus(run, config)
    max_new_tokens = decoding.pop("max_new_tokens")
    flags = decoding | {"seed": seed}
    metrics, examples, hyps = evaluate_run(model, tokenizer, config, data, split, limit, max_new_tokens, flags, lang,
                                           batch_size)
    if as_json:
        print_json(metrics)
        return
    typer.echo(format_metrics(metrics))
    for prompt, hyp, ref in list(zip(examples.prompt_texts, hyps, examples.references, strict=True))[:SHOWN_EXAMPLES]:
        typer.echo(f"\n  prompt:    {_one_line(prompt)}\n  generated: {_one_line(hyp)}\n  reference: {_one_line(ref)}")


def _check_run_corpus(run: str, config: Any) -> None:
    """The run's own corpus file must still be there (older runs stored it relative to where they trained);
    one changed since training gets a note (from the run's fingerprint.json)."""
    from pathlib import Path

    from seqlab.runs import RunDir
    from seqlab.train.fingerprint import changed_since_start, corpus_path

    path = corpus_path(config.data.corpus)
    if path is None:
        return
    where = f"data.corpus in {Path(run) / 'config.yaml'}"
    if not path.is_file():
        how = "is gone" if path.is_absolute() else "is not found from here (a path relative to where the run trained)"
        raise SeqlabError(f"the run's corpus {config.data.corpus!r} ({where}) {how}; evaluate on a copy of it with "
                          "--data PATH (add --split val or --split test to score the split held out in training)")
    if changed_since_start(RunDir(Path(run)), path):
        typer.echo(f"note: {path} changed since the run was trained (its sha256 differs from the run's "
                   "fingerprint.json); its held-out split is not the one held out in training", err=True)


def format_metrics(metrics: dict[str, Any]) -> str:
    """One line per metric, as `seqlab eval` prints them."""
    rows = []
    for key, value in metrics.items():
        shown = "n/a" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.4f}"
        rows.append(f"{key:11s} {shown}")
    return "\n".join(rows)


def _one_line(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
