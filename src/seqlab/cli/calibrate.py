"""`seqlab calibrate RUN --data HELDOUT`: the chat fallback's confidence threshold, from held-out pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from seqlab.cli.decode_options import DECODING, decode_options
from seqlab.cli.options import DeviceOpt, EncodingOpt, JsonOpt, SeedOpt, print_json
from seqlab.errors import SeqlabError

PNG = "calibration.png"


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)


@decode_options("max_new_tokens", "do_sample", "num_beams", "temperature", "top_k", "top_p", "repetition_penalty",
                "no_repeat_ngram_size", "length_penalty",
                notes={"max_new_tokens": "Default: the run's decode.max_new_tokens, as in the chat."})
def calibrate(
    run: str = typer.Argument(..., help="A run directory: a seq2seq chatbot, or a language model."),
    data: str = typer.Option(..., "--data", help="Held-out (question, answer) pairs the run was not trained on: "
                             "a .tsv of question<TAB>answer lines, or a JSONL of {\"source\", \"target\"} or "
                             "{\"messages\"} rows."),
    coverage: float = typer.Option(0.8, "--coverage", help="Target coverage in (0, 1]: the share of questions the "
                                   "bot must still answer; the threshold is the most accurate one that does."),
    out: str = typer.Option(None, "--out", help=f"Directory for {PNG} (default: the run directory)."),
    decoding: dict = DECODING,
    lang: str = typer.Option(None, "--lang", help="en | zh: the ROUGE-L tokens (default: the run's data.lang, or "
                             "detected from the answers)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Questions per generate() call."),
    encoding: str = EncodingOpt,
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to load: best | last."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
) -> None:
    """Pick chat.fallback.threshold from held-out pairs. The run replies to each question as the chat would;
    a reply is right when it equals the answer (case and spaces aside) or has ROUGE-L F >= 0.8 with it. Of
    the thresholds that keep at least --coverage of the questions answered, the one with the highest
    accuracy on the answered ones wins. Prints a table of coverage and accuracy (--json: everything, each
    reply included) and writes calibration.png, accuracy vs coverage."""
    from seqlab.cli.chat import open_session
    from seqlab.data.tokenizers.word import detect_lang
    from seqlab.eval.calibrate import calibrate as calibrate_replies
    from seqlab.eval.calibrate import check_coverage, plot_calibration, read_pairs, reply_to_pairs
    from seqlab.eval.tokens import resolve_tokenize
    from seqlab.runs import open_run

    check_coverage(coverage)
    if batch_size < 1:
        raise SeqlabError(f"--batch-size must be >= 1, got {batch_size}")
    if lang is not None and lang not in ("en", "zh"):
        raise SeqlabError(f"--lang must be en or zh, got {lang!r}")
    config = open_run(run).read_config()
    pairs = read_pairs(data, encoding=encoding, history_turns=config.data.history_turns)
    if lang is None:
        lang = config.data.lang if config.data.lang != "auto" else detect_lang([a for _, a in pairs])
    session = open_session(run, decoding, None, checkpoint, device, seed)
    replies = reply_to_pairs(session, pairs, tokenize=resolve_tokenize(lang), batch_size=batch_size, seed=seed)
    result = calibrate_replies([r.confidence for r in replies], [r.right for r in replies], coverage)
    png = plot_calibration(result, Path(out if out is not None else run) / PNG)
    if as_json:
        print_json({"run": run, "data": data, "pairs": len(pairs), **result.to_dict(), "png": str(png),
                    "replies": [{"question": r.question, "reference": r.reference, "reply": r.text,
                                 "confidence": round(r.confidence, 6), "right": r.right} for r in replies]})
        return
    typer.echo(report(result, data, png))


def report(result: Any, data: str, png: Path) -> str:
    """The table (the chosen row marked *) and how to use the threshold."""
    from seqlab.eval.calibrate import threshold_text

    off = result.off
    lines = [f"{off.total} held-out pairs ({data}): {off.right} right without a fallback "
             f"({off.accuracy:.1%})", "",
             f"  {'threshold':>11}  {'coverage':>8}  {'accuracy':>8}  {'answered':>8}"]
    for cut in result.table():
        mark = "*" if cut == result.chosen else " "
        shown = "off" if cut.threshold is None else threshold_text(cut.threshold)
        lines.append(f"{mark} {shown:>11}  {cut.coverage:>8.1%}  {cut.accuracy:>8.1%}  "
                     f"{cut.answered:>4}/{cut.total:<4}")
    chosen = result.chosen
    lines.append("")
    if chosen.threshold is None:
        lines.append(f"* at coverage >= {result.target_coverage:.0%} no threshold beats answering every question: "
                     "leave chat.fallback.threshold unset (null)")
    else:
        x = threshold_text(chosen.threshold)
        lines += [f"* threshold {x}: answers {chosen.coverage:.1%} of the questions, "
                  f"{chosen.accuracy:.1%} of them right (no fallback: {off.accuracy:.1%})",
                  f"use it: seqlab chat RUN --fallback-threshold {x} (also generate), or in the run's config.yaml:",
                  f"  chat:\n    fallback:\n      threshold: {x}"]
    lines.append(f"figure: {png}")
    return "\n".join(lines)
