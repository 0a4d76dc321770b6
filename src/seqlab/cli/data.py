"""`seqlab data`: list the built-in corpora, inspect a corpus, prepare (tokenize and cache) one."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from seqlab.cli.options import EncodingOpt, JsonOpt, SeedOpt, SetOpt, print_json
from seqlab.config import Config, from_dict, merge, parse_overrides, read_config_file
from seqlab.data.corpora import list_builtins, load_corpus
from seqlab.data.corpora.tinyshakespeare import cache_dir as user_cache_dir
from seqlab.errors import SeqlabError

# seqlab.data.prepare, .stats and seqlab.runs import torch: the commands that need them import them, so
# that `seqlab --help` does not wait for torch
if TYPE_CHECKING:
    from seqlab.data.prepare import PreparedData, Truncation

data_app = typer.Typer(help="Corpora: list the built-ins, inspect one, prepare (tokenize + cache) one.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _config(corpus: str, preset: str | None, overrides: list[str] | None, **data: object) -> Config:
    raw = read_config_file(preset) if preset else {}
    raw = merge(raw, {"data": {"corpus": corpus, **data}})
    return from_dict(Config, merge(raw, parse_overrides(overrides or [])))


@data_app.command("list")
def list_corpora(as_json: bool = JsonOpt) -> None:
    """List the built-in corpora with their source, licence and how to install them."""
    infos = list_builtins()
    if as_json:
        print_json({"corpora": [dataclasses.asdict(i) for i in infos]})
        return
    for i in infos:
        typer.echo(f"{i.name:30s} {i.description}")
        typer.echo(f"{'':30s} source: {i.source}; licence: {i.license}")


@data_app.command("inspect")
def inspect(
    corpus: str = typer.Argument(..., help="A built-in corpus name (`seqlab data list`) or a .txt/.jsonl/.tsv file."),
    tokenizer: str = typer.Option("char", "--tokenizer", help="char | word | bpe"),
    lang: str = typer.Option("auto", "--lang", help="auto | en | zh (word tokenizer: zh segments with jieba)"),
    encoding: str = EncodingOpt,
    overrides: list[str] = SetOpt,
    seed: int = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print a corpus's statistics and a few samples.

    Examples, characters, distinct characters, tokens, vocabulary size (specials included), OOV rate
    (tokenizer trained on the train split, measured on the held-out split), length percentiles (in tokens).
    """
    from seqlab.data.prepare import Truncation
    from seqlab.data.stats import corpus_stats

    cfg = _config(corpus, None, overrides, tokenizer=tokenizer, lang=lang, encoding=encoding).data
    loaded = load_corpus(cfg.corpus, encoding=cfg.encoding, history_turns=cfg.history_turns)
    stats = corpus_stats(loaded, cfg, seed=seed)
    truncation = Truncation(**stats["truncation"]) if "truncation" in stats else None
    if as_json:
        _echo_truncation(truncation, warnings_only=True)
        print_json(stats)
        return
    _print_stats(stats)
    _echo_truncation(truncation)


def _check_out(out: Path) -> None:
    """--out must be a directory, or a path where one can be created: no file may stand on it."""
    for folder in (out, *out.parents):
        if folder.is_dir():
            return
        if folder.exists():
            if folder == out:
                raise SeqlabError(f"--out {str(out)!r} is a file, not a run directory; choose a directory path")
            raise SeqlabError(f"--out {str(out)!r} cannot be created: {str(folder)!r} is a file, not a directory; "
                              "choose another path")


def _prepare_or_say_nothing_was_written(cfg: Config, seed: int, out: Path | None) -> PreparedData:
    """prepare_data; on Ctrl-C, one line saying that nothing was written (exit 130).

    The cache goes in under a hidden name and is renamed when complete, so only an interrupt landing
    after that rename finds something written, which it then names.
    """
    from seqlab.data.prepare import prepare_data

    prepared = (out if out is not None else user_cache_dir()) / "prepared"
    before = set(os.listdir(prepared)) if prepared.is_dir() else set()
    missing = [folder for folder in (prepared, *prepared.parents) if not folder.exists()]  # innermost first
    try:
        return prepare_data(cfg.data, seed, cache_dir=out)
    except KeyboardInterrupt:
        for folder in missing:  # the folders write_cache made for nothing, if still empty
            if folder.is_dir() and not os.listdir(folder):
                folder.rmdir()
        after = set(os.listdir(prepared)) if prepared.is_dir() else set()
        done = sorted(name for name in after - before if not name.startswith("."))  # hidden: being written
        if done:
            typer.echo(f"seqlab: interrupted once the cache was complete: {prepared / done[0]} is whole and "
                       "the next run will use it", err=True)
        else:
            typer.echo(f"seqlab: interrupted: nothing was written (the cache at {prepared} is unchanged)", err=True)
        raise typer.Exit(130) from None


def _print_stats(stats: dict) -> None:
    typer.echo(f"{stats['name']} ({stats['kind']}) — {stats['source']}; licence: {stats['license']}")
    for key in ("examples", "pairs", "pairs_deduplicated", "characters", "distinct_characters", "tokens",
                "vocab_size"):
        if key in stats:
            typer.echo(f"  {key:22s} {stats[key]:,}")
    oov = "n/a (too small to hold data out)" if stats["oov_rate"] is None else f"{stats['oov_rate']:.4%}"
    typer.echo(f"  {'oov_rate':22s} {oov} ({stats['tokenizer']} tokenizer, held-out split)")
    typer.echo(f"  {'length_percentiles':22s} {stats['length_percentiles']} (tokens per {stats['length_unit']})")
    typer.echo("  samples:")
    for sample in stats["samples"]:
        typer.echo(f"    {sample!r}")


@data_app.command("prepare")
def prepare(
    corpus: str = typer.Argument(..., help="A built-in corpus name or a corpus file."),
    preset: str = typer.Option(None, "--preset", help="A preset name or YAML path to start from (as `seqlab train PRESET`)."),
    overrides: list[str] = SetOpt,
    out: Path = typer.Option(None, "--out", help="A run directory to cache into (default: the user cache)."),
    encoding: str = typer.Option(None, "--encoding", help="Text encoding of the corpus file "
                                 "(default utf-8; the same as --set data.encoding=...)."),
    seed: int = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Split, tokenize and cache a corpus (in --out RUN, or the user cache).

    The tokenizer is trained on the train split only. For data.task=lm every split must hold one
    training window (model.context_length + 1 tokens). Interrupted (Ctrl-C), it writes nothing: the
    cache is renamed into place only when complete.
    """
    from seqlab.data.prepare import check_min_length
    from seqlab.runs import RunDir

    cfg = _config(corpus, preset, overrides, **({"encoding": encoding} if encoding else {}))
    if out is not None:
        _check_out(out)
    data = _prepare_or_say_nothing_was_written(cfg, seed, out)
    if cfg.data.task == "lm":
        for split in data.splits.values():
            check_min_length(split, cfg.model.context_length)
    if out is not None:
        data.tokenizer.save(RunDir(out).tokenizer)
    report = {"corpus": data.corpus, "task": data.task, "tokenizer": cfg.data.tokenizer,
              "vocab_size": data.tokenizer.vocab_size, "splits": {k: len(v) for k, v in data.splits.items()},
              "unit": "tokens" if data.task == "lm" else "examples", "cache": str(data.cache_path)}
    if data.labels:
        report["labels"] = data.labels
    if data.truncation is not None:
        report["truncation"] = dataclasses.asdict(data.truncation)
    if as_json:
        _echo_truncation(data.truncation, warnings_only=True)
        print_json(report)
        return
    sizes = ", ".join(f"{k} {v:,}" for k, v in report["splits"].items())
    typer.echo(f"{data.corpus}: {data.task}, {cfg.data.tokenizer} tokenizer ({report['vocab_size']:,} tokens); "
               f"{sizes} {report['unit']}")
    typer.echo(f"cached in {data.cache_path}")
    _echo_truncation(data.truncation)


def _echo_truncation(truncation: Truncation | None, warnings_only: bool = False) -> None:
    """One line per pair side on what data.max_*_len cut: on stdout, or as a warning on stderr above 1%."""
    for kind, line in truncation.messages() if truncation is not None else []:
        if kind == "warning":
            typer.echo(f"warning: {line}", err=True)
        elif not warnings_only:
            typer.echo(line)

