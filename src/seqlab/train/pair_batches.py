"""Length-bucketed batches of (source, target) pairs for the seq2seq recipe, resumable by (epoch, index).

Each epoch is a seeded permutation of the pairs, cut into pools of `pool_batches` batches; a pool is
sorted by (target length, source length) and cut into batches, and the batches are shuffled. Batches of
similar lengths waste little on padding (and the RNN decoder runs as many steps as its longest target).
The epoch is topped up by cycling the permutation so every batch is full. The order is a function of
(seed, epoch) alone, so the sampler's state is just (epoch, index).

A batch of `batch_size` pairs is laid out as (grad_accum, world_size, micro) and rank r takes its slice
of each micro-batch step, so the global batch is the single-process batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqlab.errors import ConfigError

IGNORE_INDEX = -100
Pair = tuple[list[int], list[int]]
Batch = tuple[Tensor, Tensor, Tensor, Tensor]  # src (B, S), src_mask (B, S), tgt_in (B, T), targets (B, T)


def collate_pairs(pairs: list[Pair], pad_id: int, bos_id: int, eos_id: int) -> Batch:
    """Right-padded tensors: src, its mask, decoder input BOS + tgt, and targets tgt + EOS (IGNORE_INDEX at pads)."""
    B = len(pairs)
    S = max(1, max(len(s) for s, _ in pairs))
    T = max(len(t) for _, t in pairs) + 1
    src = torch.full((B, S), pad_id, dtype=torch.long)
    tgt_in = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    for b, (s, t) in enumerate(pairs):
        src[b, :len(s)] = torch.tensor(s, dtype=torch.long)
        tgt_in[b, :len(t) + 1] = torch.tensor([bos_id, *t], dtype=torch.long)
        targets[b, :len(t) + 1] = torch.tensor([*t, eos_id], dtype=torch.long)
    src_mask = torch.arange(S)[None, :] < torch.tensor([len(s) for s, _ in pairs])[:, None]
    return src, src_mask, tgt_in, targets


def by_length(pairs: list[Pair], indices: list[int]) -> list[int]:
    return sorted(indices, key=lambda i: (len(pairs[i][1]), len(pairs[i][0])))


class PairBatcher:
    def __init__(self, pairs: list[Pair], batch_size: int, grad_accum: int, seed: int, rank: int = 0,
                 world_size: int = 1, pool_batches: int = 50):
        if batch_size % (grad_accum * world_size):
            raise ConfigError(f"train.batch_size ({batch_size}) must be divisible by train.grad_accum x ranks "
                              f"({grad_accum} x {world_size})")
        self.pairs, self.batch_size, self.grad_accum = pairs, batch_size, grad_accum
        self.seed, self.rank, self.world_size, self.pool_batches = seed, rank, world_size, pool_batches
        self.epoch, self.index = 0, 0
        self.order = self._epoch_order(0)

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // (self.grad_accum * self.world_size)

    def _epoch_order(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.pairs), generator=generator).tolist()
        n_batches = -(-len(perm) // self.batch_size)
        perm = (perm * -(-n_batches * self.batch_size // len(perm)))[:n_batches * self.batch_size]
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(perm), pool):
            chunk = by_length(self.pairs, perm[start:start + pool])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def next_indices(self) -> list[list[int]]:
        """This rank's `grad_accum` micro-batches of pair indices for the next optimizer step."""
        if self.index == len(self.order):
            self.epoch, self.index = self.epoch + 1, 0
            self.order = self._epoch_order(self.epoch)
        batch = self.order[self.index]
        self.index += 1
        m = self.micro_batch_size
        return [batch[(k * self.world_size + self.rank) * m:(k * self.world_size + self.rank + 1) * m]
                for k in range(self.grad_accum)]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self.order = self._epoch_order(self.epoch)


def eval_batches(pairs: list[Pair], batch_size: int) -> list[list[int]]:
    """Every pair once, in length-sorted batches (a fixed order: validation needs no randomness)."""
    order = by_length(pairs, list(range(len(pairs))))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
