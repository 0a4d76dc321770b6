"""How many tokens a run may generate when its config leaves `decode.max_new_tokens` unset (None).

    seq2seq run (data.task pairs):  cap = L + max(8, ceil(L / 4))
        L = the longest target the run was trained on, in tokens (run.json's `longest_target`, recorded by
            the seq2seq recipe; for a run without it, data.max_target_len, the longest a target could be)
    any other run:                  200 (set when the Config is built)

A reply the cap cuts short is marked (finish_reason "length"); the margin keeps that rare for a model
that learnt to end its replies. An explicit `decode.max_new_tokens` or `--max-new-tokens` always wins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from seqlab.io import read_json
from seqlab.runs import RunDir


def reply_cap(longest_target: int) -> int:
    """The longest training target plus a margin of 25%, at least 8 tokens."""
    return longest_target + max(8, math.ceil(longest_target / 4))


def run_max_new_tokens(config: Any, run_dir: str | Path | None = None) -> int:
    """`config.decode.max_new_tokens`, or when it is unset the cap above for the run at `run_dir`."""
    if config.decode.max_new_tokens is not None:
        return int(config.decode.max_new_tokens)
    longest = recorded_longest_target(run_dir) if run_dir is not None else None
    return reply_cap(longest if longest is not None else config.data.max_target_len)


def recorded_longest_target(run_dir: str | Path) -> int | None:
    """run.json's `longest_target`, None when the run has none (or no readable run.json)."""
    try:
        value = read_json(RunDir(Path(run_dir)).info).get("longest_target")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
