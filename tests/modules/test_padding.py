"""Source batches: any padding in, right-padded ids, mask and lengths out."""

import pytest
import torch

from seqlab.modules.padding import source_batch


def test_right_padded_batch_derives_mask_from_pad_id_and_trims():
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0]])
    out, mask, lengths = source_batch(ids, None, pad_id=0)
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert lengths.tolist() == [3, 1]


def test_left_padded_batch_is_moved_to_the_front_in_order():
    ids = torch.tensor([[9, 9, 5, 6], [4, 3, 2, 1]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    out, m, lengths = source_batch(ids, mask, pad_id=0)
    assert out.tolist() == [[5, 6, 0, 0], [4, 3, 2, 1]]  # masked-out ids become pad
    assert m.sum(1).tolist() == lengths.tolist() == [2, 4]


def test_an_empty_row_keeps_one_position():
    out, mask, lengths = source_batch(torch.tensor([[0, 0], [3, 0]]), None, pad_id=0)
    assert out.tolist() == [[0], [3]] and mask.tolist() == [[True], [True]] and lengths.tolist() == [1, 1]


def test_mask_shape_must_match():
    with pytest.raises(ValueError, match="does not match"):
        source_batch(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4), pad_id=0)
