"""`seqlab quantize RUN --out RUN_INT8`: an int8 copy of a trained run (seqlab.compress.quantize)."""

from __future__ import annotations

import typer

from seqlab.cli.options import JsonOpt, print_json


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)


def quantize(
    run: str = typer.Argument(..., help="A trained run directory (from `seqlab train`, `seqlab distill`, an import...)."),
    out: str = typer.Option(..., "--out", help="The int8 run directory to create (must not exist)."),
    method: str | None = typer.Option(None, "--method", show_default=False,
                               help="weight-only (int8 weights, float activations; seqlab's int8 kernel decodes "
                               "1-8 rows fastest; default for Transformers) | dynamic (activations quantized "
                               "too: seqlab's W8A8 kernel for 1-8 rows, fbgemm's int8 GEMM beyond, faster for "
                               "large batches and LSTM / GRU; default for recurrent models)."),
    dtype: str = typer.Option("int8", "--dtype", help="Weight type: int8 (the only one so far)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to quantize: best | last."),
    as_json: bool = JsonOpt,
) -> None:
    """Quantize a run's weights to int8 (one scale per output channel) and write them as a new run.

    Every Linear, Embedding and LSTM / GRU / RNN matrix becomes int8; biases and LayerNorms stay fp32.
    An int8 run builds seqlab's CPU kernels the first time it runs on a machine (~20 s; needs a C++
    compiler and AVX2, else weight-only computes on the dequantized weight and dynamic on fbgemm's GEMM).

    The new run holds the source's config and tokenizer and an int8 model.safetensors that records the method:
    `seqlab generate`, `chat`, `eval` and `serve` use it like any run.

    JSON keys: run, source, checkpoint, arch, dtype, method, quantized (modules per kind), source_bytes,
    int8_bytes, smaller, seconds.
    """
    from seqlab.compress.quantize import quantize_run

    summary = quantize_run(run, out, method, dtype, checkpoint)
    if as_json:
        print_json(summary)
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in summary["quantized"].items() if n)
    typer.echo(f"wrote {summary['run']}: {summary['dtype']} ({summary['method']}; {counts}); weights "
               f"{summary['source_bytes'] / 1e6:.2f} MB -> {summary['int8_bytes'] / 1e6:.2f} MB "
               f"({summary['smaller']}x smaller) in {summary['seconds']} s")
