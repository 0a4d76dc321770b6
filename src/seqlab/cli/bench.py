"""`seqlab bench NAME [ARGS...]`: run `bench/NAME.py` of the repository checkout with this Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from seqlab.errors import SeqlabError


def register(app: typer.Typer) -> None:
    # no --help of its own: `seqlab bench NAME --help` is the benchmark's help
    app.command("bench", add_help_option=False,
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(bench)


def bench_dir() -> Path:
    """`bench/` next to `src/` in the checkout seqlab runs from (src layout: src/seqlab/cli/bench.py)."""
    return Path(__file__).resolve().parents[3] / "bench"


def available() -> list[str]:
    folder = bench_dir()
    return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_")) if folder.is_dir() else []


def bench(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The benchmark: a script bench/NAME.py of the checkout."),
) -> None:
    """Run a benchmark script of the repository checkout (`bench/NAME.py`), passing it the remaining arguments;
    benchmarks print JSON on stdout and a one-line summary on stderr. `seqlab bench NAME --help` shows its options."""
    if name in ("--help", "-h"):
        typer.echo(ctx.get_help())
        typer.echo(f"\nbenchmarks: {', '.join(available()) or 'none (not a repository checkout)'}")
        return
    names = available()
    if not names:
        raise SeqlabError(f"seqlab bench runs the scripts in a repository checkout's bench/ folder, and there is none "
                          f"at {bench_dir()} (seqlab is not installed from a checkout)")
    if name not in names:
        raise SeqlabError(f"unknown benchmark {name!r}; available: {', '.join(names)}")
    code = subprocess.call([sys.executable, str(bench_dir() / f"{name}.py"), *ctx.args])
    raise typer.Exit(code)
