"""Pair batches: collation, length bucketing, epochs, resume position, rank slices."""

import pytest
import torch

from seqlab.errors import ConfigError
from seqlab.train.pair_batches import IGNORE_INDEX, PairBatcher, collate_pairs, eval_batches

PAD, BOS, EOS = 0, 2, 3


def _pairs(n=40):
    g = torch.Generator().manual_seed(0)
    return [(list(range(5, 5 + int(torch.randint(0, 9, (1,), generator=g)))),
             list(range(6, 6 + int(torch.randint(1, 9, (1,), generator=g))))) for _ in range(n)]


def test_collate_adds_bos_and_eos_and_ignores_padding():
    src, mask, tgt_in, targets = collate_pairs([([7, 8, 9], [10]), ([], [11, 12])], PAD, BOS, EOS)
    assert src.tolist() == [[7, 8, 9], [PAD, PAD, PAD]] and mask.tolist() == [[1, 1, 1], [0, 0, 0]]
    assert tgt_in.tolist() == [[BOS, 10, PAD], [BOS, 11, 12]]
    assert targets.tolist() == [[10, EOS, IGNORE_INDEX], [11, 12, EOS]]


def test_an_epoch_visits_every_pair_once_in_length_sorted_batches():
    pairs = _pairs(40)
    batcher = PairBatcher(pairs, batch_size=8, grad_accum=1, seed=1, pool_batches=5)
    seen = []
    for _ in range(5):
        (batch,) = batcher.next_indices()
        lengths = [(len(pairs[i][1]), len(pairs[i][0])) for i in batch]
        assert lengths == sorted(lengths)
        seen += batch
    assert sorted(seen) == list(range(40))
    batcher.next_indices()
    assert batcher.state_dict() == {"epoch": 1, "index": 1}


def test_a_short_epoch_is_topped_up_to_full_batches():
    batcher = PairBatcher(_pairs(5), batch_size=4, grad_accum=1, seed=1)
    batches = [batcher.next_indices()[0] for _ in range(2)]
    assert all(len(b) == 4 for b in batches) and set(sum(batches, [])) == set(range(5))


def test_resume_continues_the_same_order():
    pairs = _pairs(40)
    a = PairBatcher(pairs, 8, 1, seed=3)
    for _ in range(7):
        a.next_indices()
    b = PairBatcher(pairs, 8, 1, seed=3)
    b.load_state_dict(a.state_dict())
    assert [a.next_indices() for _ in range(4)] == [b.next_indices() for _ in range(4)]


def test_ranks_and_accumulation_split_the_global_batch():
    pairs = _pairs(40)
    single = PairBatcher(pairs, 8, 1, seed=2).next_indices()[0]
    ranks = [PairBatcher(pairs, 8, 2, seed=2, rank=r, world_size=2).next_indices() for r in range(2)]
    assert all(len(m) == 2 for micro in ranks for m in micro)
    assert sorted(i for micro in ranks for m in micro for i in m) == sorted(single)
    with pytest.raises(ConfigError, match="divisible"):
        PairBatcher(pairs, 6, 4, seed=2)


def test_eval_batches_cover_every_pair_once():
    batches = eval_batches(_pairs(10), 4)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(sum(batches, [])) == list(range(10))
