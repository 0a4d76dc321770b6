"""Stop strings: a sequence finishes once its generated text contains one of them.

The token ids are decoded (special tokens skipped) from the end of the prompt, so a stop string is
found even when it spans several tokens or the middle of one. Text shown to the user is cut right
after the first stop string (`cut_at_stop`); the token sequences keep the whole last token, as in HF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class StopStrings:
    def __init__(self, stops: Sequence[str], tokenizer: Any, prompt_length: int):
        self.stops = list(stops)
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, sequences: Tensor) -> Tensor:
        """sequences (N, L) -> (N,) bool: the text generated after the prompt holds a stop string."""
        rows = sequences[:, self.prompt_length:].tolist()
        hits = [any(s in self.tokenizer.decode(row) for s in self.stops) for row in rows]
        return torch.tensor(hits, dtype=torch.bool, device=sequences.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(text up to and including the earliest stop string, whether one was found)."""
    ends = [text.find(s) + len(s) for s in stops if s in text]
    if not ends:
        return text, False
    return text[:min(ends)], True
