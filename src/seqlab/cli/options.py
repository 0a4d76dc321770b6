"""Options shared by many commands, so every command spells them the same way."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import typer

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout instead of a human-readable report.")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda (auto = cuda when present).")


def _check_seed(value: int | None) -> int | None:
    """--seed must be in [0, 2^63) (one line, exit 2, before the command runs)."""
    from seqlab.config import check_seed

    return value if value is None else check_seed(value)


SeedOpt = typer.Option(1337, "--seed", callback=_check_seed,
                       help="Random seed in [0, 2^63) (runs are deterministic for a given seed).")
SetOpt = typer.Option(None, "--set", help="Override a config key, e.g. --set train.lr=3e-4 (repeatable).")
EncodingOpt = typer.Option("utf-8", "--encoding", help="Text encoding of input files.")


def print_json(obj: Any) -> None:
    """The single JSON object a `--json` command prints: valid UTF-8, whatever its strings hold.

    A lone surrogate (a file name's undecodable byte, kept by Python's surrogateescape) cannot be
    written as UTF-8; it is written as its JSON escape (\\udcff), which `json.loads` reads back as is.
    """
    text = json.dumps(obj, ensure_ascii=False, default=_default)
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as e:  # e.g. stdout is a full disk: the CLI names it
        if e.filename is None:
            e.filename = "<stdout>"
        raise


# JSON text has surrogates only inside strings, where the escape means the same code point
_SURROGATE = re.compile("[\ud800-\udfff]")


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
