"""From prompt text to the model's input: token ids, an optional label token, and left-padded batches.

Decoder-only models continue the prompt, so a batch of prompts of different lengths is padded on the
left (the last real token of every row sits in the last column) and `attention_mask` marks the real
tokens, as Hugging Face does for GPT-2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from seqlab.errors import SeqlabError


def label_token(label: str) -> str:
    return f"<label:{label}>"


def build_prompt_ids(tokenizer: Any, text: str, label: str | None = None) -> list[int]:
    """Token ids of `text`, preceded by the special token `<label:L>` for label-conditioned runs.

    An empty prompt starts from the tokenizer's `<bos>`, so the model always has a token to condition on.
    """
    ids = tokenizer.encode(text, add_bos=False, add_eos=False)
    if label is not None:
        label_id = tokenizer.token_to_id(label_token(label))
        if label_id is None:
            known = sorted(t for t in getattr(tokenizer, "specials", []) if t.startswith("<label:"))
            hint = f"; this run knows {', '.join(known)}" if known else "; this run was not trained with labels"
            raise SeqlabError(f"unknown label {label!r} (no token {label_token(label)} in the vocabulary{hint})")
        ids = [label_id] + ids
    return ids or [tokenizer.bos_id]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Rows of token ids -> (input_ids (B, T), attention_mask (B, T)), padded on the left with `pad_id`."""
    if not rows or any(len(r) == 0 for r in rows):
        raise SeqlabError("every prompt needs at least one token")
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        attention_mask[i, width - len(r):] = 1
    return input_ids, attention_mask
