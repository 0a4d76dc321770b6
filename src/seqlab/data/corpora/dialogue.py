"""Turning a conversation into (context -> reply) pairs.

A conversation of turns t_0 .. t_{n-1} yields, for each reply turn t_i (i >= 1),

    source = " <sep> ".join(t_{max(0, i-k)} .. t_{i-1}),   target = t_i

with k = `history_turns` (k = 1: the consecutive utterance -> reply pairs). When the turns carry
roles and one of them is "assistant", only the assistant's turns are replies; "system" turns are
never part of the history.
"""

from __future__ import annotations

from typing import Any

from seqlab.data.corpus import Pair
from seqlab.data.tokenizers.base import SEP
from seqlab.errors import DataError

SEPARATOR = f" {SEP} "


def dialogue_pairs(turns: list[str] | list[tuple[str, str]], history_turns: int, group: str,
                   meta: dict[str, Any] | None = None) -> list[Pair]:
    """The (last k turns -> reply) pairs of one conversation; `turns` are strings or (role, content)."""
    if history_turns < 1:
        raise DataError(f"history_turns must be >= 1, got {history_turns}")
    roled = [t if isinstance(t, tuple) else ("", t) for t in turns]
    roled = [(role, text) for role, text in roled if role != "system"]
    replies_by = "assistant" if any(role == "assistant" for role, _ in roled) else None
    pairs = []
    for i in range(1, len(roled)):
        role, reply = roled[i]
        if replies_by is not None and role != replies_by:
            continue
        history = [text for _, text in roled[max(0, i - history_turns):i]]
        pairs.append(Pair(SEPARATOR.join(history), reply, group, dict(meta or {})))
    return pairs
