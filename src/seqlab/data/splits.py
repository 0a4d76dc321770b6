"""Train / validation / test splits.

`split_by_group`: a seeded random split that never cuts a group (a conversation, a play, a poem)
and never puts two identical examples on different sides: groups that share an identical example
are merged (union-find) into one unit, the units are shuffled with `random.Random(seed)`, then test
and validation are filled to their fractions of the examples and the rest is train.

`contiguous_split`: the first (1 - val - test) of a sequence is train, then val, then test — the
"first 90% / last 10%" split nanoGPT uses for tinyshakespeare (`n = int(0.9 * len(data))`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from seqlab.errors import DataError

T = TypeVar("T")
S = TypeVar("S", bound=Sequence)


def contiguous_split(data: S, val_fraction: float, test_fraction: float = 0.0) -> dict[str, S]:
    """{"train": data[:a], "val": data[a:b], "test": data[b:]} with a = int(n(1-v-t)), b = int(n(1-t))."""
    n = len(data)
    a, b = int(n * (1.0 - val_fraction - test_fraction)), int(n * (1.0 - test_fraction))
    out = {"train": data[:a], "val": data[a:b]}
    if test_fraction > 0:
        out["test"] = data[b:]
    return out


def split_by_group(items: Sequence[T], *, group: Callable[[T], Hashable], key: Callable[[T], Hashable],
                   val_fraction: float, test_fraction: float = 0.0, seed: int = 0) -> dict[str, list[T]]:
    """Seeded split of `items` keeping each `group` and each identical `key` on one side (items keep their order)."""
    units = _units(items, group, key)
    order = list(range(len(units)))
    random.Random(seed).shuffle(order)
    targets = {"test": round(test_fraction * len(items)), "val": round(val_fraction * len(items))}
    side_of_unit: dict[int, str] = {}
    filled = {"test": 0, "val": 0}
    for u in order:
        side = next((s for s in ("test", "val") if filled[s] < targets[s]), "train")
        side_of_unit[u] = side
        if side != "train":
            filled[side] += len(units[u])
    side_of_item = {i: side_of_unit[u] for u, members in enumerate(units) for i in members}
    out: dict[str, list[T]] = {"train": [], "val": []} | ({"test": []} if test_fraction > 0 else {})
    for i, item in enumerate(items):
        out[side_of_item[i]].append(item)
    for side, fraction in (("val", val_fraction), ("test", test_fraction)):
        if fraction > 0 and not out[side]:
            raise DataError(f"too few examples ({len(items)}) for a {side} split of {fraction}")
    if not out["train"]:
        raise DataError(f"too few distinct groups ({len(units)}, after merging groups that share an identical "
                        "example) to leave any training data after the val/test split")
    return out


def _units(items: Sequence[T], group: Callable[[T], Hashable], key: Callable[[T], Hashable]) -> list[list[int]]:
    """Item indices grouped into split units: same group, or linked through an identical key."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, Hashable], int] = {}
    for i, item in enumerate(items):
        for label in (("group", group(item)), ("key", key(item))):
            j = first.setdefault(label, i)
            parent[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for i in range(len(items)):
        members.setdefault(find(i), []).append(i)
    return sorted(members.values(), key=lambda m: m[0])
