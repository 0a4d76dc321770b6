"""`seqlab score`: BLEU, ROUGE, distinct-n and self-BLEU of a hypothesis file against references."""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

import typer

from seqlab.cli.options import JsonOpt, print_json
from seqlab.data.corpus import split_lines
from seqlab.errors import SeqlabError
from seqlab.eval.score import score_texts
from seqlab.io import decode_utf8

# metric -> (label, format) for the human-readable table
_ROWS = {
    "bleu": ("BLEU", "{:.2f}"),
    "rouge1": ("ROUGE-1 F", "{:.4f}"),
    "rouge2": ("ROUGE-2 F", "{:.4f}"),
    "rougeL": ("ROUGE-L F", "{:.4f}"),
    "distinct1": ("distinct-1", "{:.4f}"),
    "distinct2": ("distinct-2", "{:.4f}"),
    "self_bleu": ("self-BLEU", "{:.2f}"),
    "avg_len": ("avg length (tokens)", "{:.2f}"),
}


def register(app: typer.Typer) -> None:
    app.command("score")(score)


def score(
    hyp: Path = typer.Option(None, "--hyp", help="Hypotheses: UTF-8 text, one sentence per line (required)."),
    refs: list[Path] = typer.Option(None, "--ref", help="References, line-aligned with --hyp (repeat for several)."),
    lang: str = typer.Option("en", "--lang", help="en (13a tokens) | zh (sacrebleu's zh tokenizer: characters)."),
    tokenize: str = typer.Option(None, "--tokenize", help="Any offline sacrebleu tokenizer, overriding --lang "
                                 "(13a, intl, zh, char, none, ja-mecab, ko-mecab; char for ja/ko/th)."),
    as_json: bool = JsonOpt,
) -> None:
    """Score generated sentences: BLEU (sacrebleu), ROUGE-1/2/L (rouge-score), distinct-1/2, self-BLEU."""
    if hyp is None:
        raise SeqlabError("give the hypotheses with --hyp FILE")
    if not refs:
        raise SeqlabError("give at least one reference file with --ref FILE")
    hyps = read_lines(hyp, "hypothesis")
    if not any(line.strip() for line in hyps):
        raise SeqlabError(f"hypothesis file {hyp} is empty")
    ref_sets = []
    for ref in refs:
        lines = read_lines(ref, "reference")
        if len(lines) != len(hyps):
            raise SeqlabError(f"{hyp} has {len(hyps)} lines but {ref} has {len(lines)}; they must be line-aligned")
        ref_sets.append(lines)
    scores = score_texts(hyps, ref_sets, lang=lang, tokenize=tokenize)
    if as_json:
        print_json(scores)
    else:
        _print_table(scores, f"{len(hyps)} sentences, {len(refs)} reference set(s)")


def read_lines(path: Path, role: str) -> list[str]:
    """The lines of a UTF-8 text file (a trailing newline ends the last line; CRLF is accepted)."""
    if not path.exists():
        raise SeqlabError(f"{role} file not found: {path}")
    if path.is_dir():
        raise SeqlabError(f"{role} file {path} is a directory")
    _refuse_endless(path, role)
    data = path.read_bytes()
    body = data.removeprefix(codecs.BOM_UTF8)
    return split_lines(decode_utf8(body, f"{role} file {path}", offset=len(data) - len(body)))


def _refuse_endless(path: Path, role: str) -> None:
    """A pipe or a terminal (`/dev/stdin`, `<(cmd)`) ends; a device such as /dev/zero or a socket would be
    read forever: refuse those."""
    mode = path.stat().st_mode
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and not _is_terminal(path)):
        raise SeqlabError(f"{role} file {path} is a device or socket, not a file; give a text file or a pipe")


def _is_terminal(path: Path) -> bool:
    try:
        with open(path, "rb", buffering=0) as f:
            return os.isatty(f.fileno())
    except OSError:
        return False


def _print_table(scores: dict, caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="seqlab score", caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, (label, fmt) in _ROWS.items():
        value = scores[key]
        table.add_row(label, "n/a (needs 2+ hypotheses)" if value is None else fmt.format(value))
    Console().print(table)
