"""Splits: nanoGPT's contiguous cut, and seeded group splits that never leak a group or an identical example."""

from __future__ import annotations

import pytest

from seqlab.data.corpora import Pair, load_corpus
from seqlab.data.splits import contiguous_split, split_by_group
from seqlab.errors import DataError


def test_contiguous_split_is_nanogpts():
    data = list(range(1115394))
    n = int(0.9 * len(data))  # nanoGPT data/shakespeare_char/prepare.py
    parts = contiguous_split(data, 0.1)
    assert parts["train"] == data[:n] and parts["val"] == data[n:] and set(parts) == {"train", "val"}
    parts = contiguous_split("abcdefghij", 0.2, 0.1)
    assert parts == {"train": "abcdefg", "val": "hi", "test": "j"}


def pairs_split(items, seed, val=0.1, test=0.1):
    return split_by_group(items, group=lambda p: p.group, key=lambda p: (p.source, p.target), val_fraction=val,
                          test_fraction=test, seed=seed)


def test_group_split_never_leaks_chatterbot():
    pairs = load_corpus("chatterbot/english").examples
    parts = pairs_split(pairs, seed=7)
    assert sum(map(len, parts.values())) == len(pairs)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not {p.group for p in parts[a]} & {p.group for p in parts[b]}
        assert not {(p.source, p.target) for p in parts[a]} & {(p.source, p.target) for p in parts[b]}
    for side, fraction in (("val", 0.1), ("test", 0.1)):
        assert abs(len(parts[side]) / len(pairs) - fraction) < 0.05


def test_group_split_is_deterministic_and_seeded():
    items = [Pair(f"s{i}", f"t{i}", f"g{i // 3}") for i in range(300)]
    a, b, c = pairs_split(items, 1), pairs_split(items, 1), pairs_split(items, 2)
    assert a == b and a != c
    assert a["train"] == [p for p in items if p in a["train"]]  # items keep their corpus order


def test_identical_examples_in_different_groups_stay_together():
    items = [Pair("hi", "hello", f"g{i}") for i in range(5)] + [Pair(f"s{i}", "t", f"h{i}") for i in range(50)]
    for seed in range(10):
        parts = pairs_split(items, seed)
        sides = [side for side, part in parts.items() if any(p.source == "hi" for p in part)]
        assert len(sides) == 1


def test_too_few_groups():
    items = [Pair("a", "b", "only")]
    with pytest.raises(DataError, match="too few"):
        pairs_split(items, 0)
