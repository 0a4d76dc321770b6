"""Random training windows from a token stream, drawn from a seeded generator whose state is checkpointed.

Every optimizer step draws the offsets of the whole global batch (`batch_size` windows of
`context_length + 1` tokens) from one `torch.Generator`; the offsets are laid out as
(grad_accum, world_size, micro) and rank r takes column r of each micro-batch (DistributedSampler
style). All ranks run the same generator, so the global batch is the single-process batch, and a
resumed run continues from exactly the same data position.
"""

from __future__ import annotations

from typing import Any

import torch

from seqlab.errors import ConfigError


class WindowSampler:
    def __init__(self, stream: torch.Tensor, context_length: int, batch_size: int, grad_accum: int,
                 seed: int, rank: int = 0, world_size: int = 1):
        if batch_size % (grad_accum * world_size):
            raise ConfigError(f"train.batch_size ({batch_size}) must be divisible by train.grad_accum x ranks "
                              f"({grad_accum} x {world_size})")
        self.stream = stream  # (N,) token ids, on the training device
        self.context_length = context_length
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator().manual_seed(seed)
        self._arange = torch.arange(context_length + 1, device=stream.device)

    @property
    def micro_batch_size(self) -> int:
        """Windows per forward pass on this rank."""
        return self.batch_size // (self.grad_accum * self.world_size)

    def next_step(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's `grad_accum` micro-batches (inputs, targets), each (micro, T), for one optimizer step."""
        high = self.stream.numel() - self.context_length  # last valid start + 1
        offsets = torch.randint(high, (self.batch_size,), generator=self.generator)
        offsets = offsets.view(self.grad_accum, self.world_size, self.micro_batch_size)[:, self.rank]
        batches = []
        for micro in offsets.to(self.stream.device, non_blocking=True):
            windows = self.stream[micro[:, None] + self._arange]  # (micro, T + 1)
            batches.append((windows[:, :-1].contiguous(), windows[:, 1:].contiguous()))
        return batches

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
