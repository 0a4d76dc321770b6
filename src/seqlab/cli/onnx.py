"""`seqlab export-onnx RUN`: a run's LM as ONNX prefill and step graphs (decode them with `generate --engine onnxruntime`)."""

from __future__ import annotations

from pathlib import Path

import typer

from seqlab.cli.options import JsonOpt, print_json


def register(app: typer.Typer) -> None:
    app.command("export-onnx")(export_onnx)


def export_onnx(
    run: Path = typer.Argument(..., help="A run directory holding a transformer_lm or rnn_lm (rnn, lstm, gru)."),
    out: Path = typer.Option(None, "--out", help="The folder to create (new or empty); default RUN/onnx, where "
                             "`seqlab generate RUN --engine onnxruntime` looks."),
    int8: bool = typer.Option(False, "--int8", help="Also write OUT/int8: the graphs with int8 weights "
                              "(onnxruntime's quantize_dynamic: activations are quantized on the fly)."),
    opset: int = typer.Option(None, "--opset", help="ONNX opset of the graphs (14-23; default 18)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to export: best | last."),
    as_json: bool = JsonOpt,
) -> None:
    """Export a run's language model to ONNX: a prefill graph (prompt ids and mask -> logits and the first
    decoding state) and a step graph (one token per row and the state -> logits and the next state), the
    KV cache (Transformer) or hidden state (RNN) as explicit inputs and outputs, with dynamic batch and
    length axes. The folder also holds the tokenizer and seqlab-onnx.json (the graphs' inputs and outputs,
    the run's config, the hashes of the weights they come from). Each export is checked against eager
    decoding; the largest logit difference is reported. Needs the onnx extra: pip install 'seqlab\\[onnx]'."""
    from seqlab.interop.onnx import export_onnx as export

    out = out if out is not None else run / "onnx"
    summary = export(run, out, int8=int8, opset=opset, which=checkpoint)
    if as_json:
        print_json({k: v for k, v in summary.items() if k != "config"})
        return
    model = summary["model"]
    typer.echo(f"exported run {run} -> {out} ({model['arch']}, opset {summary['opset']}, {summary['exporter']} exporter)")
    typer.echo(f"  {_sizes(summary['bytes'])}; max |logit - eager| {summary['check']['max_abs_logit_diff']:.1e}")
    if "int8_graphs" in summary:
        int8_summary = summary["int8_graphs"]
        typer.echo(f"  int8/: {_sizes(int8_summary['bytes'])}; max |logit - eager| "
                   f"{int8_summary['check']['max_abs_logit_diff']:.1e}")
    typer.echo(f"  decode: seqlab generate {run} --engine onnxruntime"
               + ("" if out == run / "onnx" else f" --onnx {out}") + " --prompt TEXT")


def _sizes(sizes: dict[str, int]) -> str:
    return (f"{_size(sizes['total'])} (prefill.onnx {_size(sizes['prefill'])}, step.onnx {_size(sizes['step'])}, "
            f"weights.bin {_size(sizes['weights'])})")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"
