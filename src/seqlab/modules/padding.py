"""Source padding for encoder-decoders: masks from pad ids, and left-padded batches made right-padded.

Encoders want real tokens first (packed RNN sequences take lengths; learned positions start at 0), but a
caller may hand a left-padded batch (as for decoder-only prompts). `source_batch` accepts any padding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def source_batch(ids: Tensor, mask: Tensor | None, pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """ids (B, S), mask (B, S) or None (then ids != pad_id) -> right-padded (ids, mask bool, lengths (B,)).

    Real tokens keep their order; a row with no real token keeps one (padding) position so every row has
    something to attend to.
    """
    mask = (ids != pad_id) if mask is None else mask.bool()
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
    mask = mask.clone()
    mask[mask.sum(1) == 0, 0] = True
    # a stable sort on "is padding" moves real tokens to the front, in order
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # (B, S)
    ids = torch.where(mask, ids, torch.full_like(ids, pad_id)).gather(1, order)
    mask = mask.gather(1, order)
    lengths = mask.sum(1)
    width = int(lengths.max())
    return ids[:, :width], mask[:, :width], lengths
