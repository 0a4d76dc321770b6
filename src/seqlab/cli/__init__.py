"""The `seqlab` command line: one Typer app, one module per command group.

Each module in `COMMANDS` exposes `register(app)`, which adds its typed command functions (their
docstrings are their `--help`). Errors the user can fix (`SeqlabError`) print one line on stderr
and exit with code 2; `--debug` (anywhere on the line, or SEQLAB_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from seqlab.errors import SeqlabError, one_line, os_error_message

# command group -> module under seqlab.cli (in --help order)
COMMANDS = [
    "config",
    "data",
    "train",
    "score",
    "interop",
    "quantize",
    "prune",
    "distill",
    "onnx",
    "seqgan",
    "generate",
    "attention",
    "eval",
    "calibrate",
    "chat",
    "serve",
    "demo",
    "bench",
]

app = typer.Typer(
    name="seqlab",
    help="seqlab: neural text and dialogue generation — data, models, decoding, evaluation, SeqGAN.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    """`--version`: print and exit while the options are parsed (before Click asks for a command)."""
    if value:
        import seqlab

        typer.echo(f"seqlab {seqlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """seqlab: neural text and dialogue generation."""


for _name in COMMANDS:
    importlib.import_module(f"seqlab.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SEQLAB_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="seqlab")
    except SeqlabError as e:
        if debug:
            raise
        print(f"seqlab: error: {one_line(str(e))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        print("seqlab: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # an unexpected failure: still one line, with the way to see more
        if debug:
            raise
        if (message := _user_os_error(e)) is not None:  # a full disk, a denied path...: the user's to fix
            print(f"seqlab: error: {one_line(message)}", file=sys.stderr)
            sys.exit(2)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"seqlab: internal error: {type(e).__name__}: {one_line(msg)} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(1)


def _user_os_error(e: Exception) -> str | None:
    """The one-line message for an OS error about the user's disk or paths, else None.

    Only the errnos `os_error_message` knows (no space, no permission, read-only, not a directory, name too
    long...): any other OSError may be seqlab's bug and stays an internal error.
    """
    if not isinstance(e, OSError):
        return None
    where = "output (stdout or a file)" if e.filename is None else os.fsdecode(e.filename)
    if e.filename2 is not None:
        where += f" -> {os.fsdecode(e.filename2)}"
    return os_error_message(e.errno, where)
