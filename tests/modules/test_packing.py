"""Packed: the real tokens of a left-padded batch, and back."""

from __future__ import annotations

import torch

from seqlab.modules.packing import Packed


def left_padded(lengths: list[int], T: int) -> torch.Tensor:
    return torch.tensor([[False] * (T - n) + [True] * n for n in lengths])


def test_pack_unpack_and_last_by_hand():
    real = left_padded([3, 1, 2], 3)
    packed = Packed.of(real)
    assert packed is not None and packed.index.tolist() == [0, 1, 2, 5, 7, 8]
    x = torch.arange(9.0).view(3, 3, 1) + 1  # (B, T, 1): 1..9, row-major
    flat = packed.pack(x)
    assert flat[:, 0].tolist() == [1, 2, 3, 6, 8, 9]
    assert packed.unpack(flat)[..., 0].tolist() == [[1, 2, 3], [0, 0, 6], [0, 8, 9]]  # zeros at padding
    assert packed.last(flat)[:, 0].tolist() == [3, 6, 9]  # each row's last token


def test_a_batch_without_padding_or_not_left_padded_is_not_packed():
    assert Packed.of(torch.ones(2, 4, dtype=torch.bool)) is None
    assert Packed.of(left_padded([3, 0], 3)) is None  # an empty row: no last token to take
    assert Packed.of(torch.tensor([[True, True, False], [True, True, True]])) is None  # right padding


def test_unpack_inverts_pack_on_real_positions():
    torch.manual_seed(0)
    real = left_padded([5, 2, 4, 1], 5)
    packed = Packed.of(real)
    x = torch.randn(4, 5, 3)
    again = packed.unpack(packed.pack(x))
    assert torch.equal(again[real], x[real]) and not again[~real].any()
