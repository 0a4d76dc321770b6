"""One optimizer step over gradient-accumulation micro-batches, with mixed precision and DDP.

    g = (1/K) sum_k grad L(batch_k)        K = grad_accum micro-batches (DDP averages g over ranks)
    g <- g * min(1, clip / ||g||)          global-norm clipping (clip > 0)
    theta <- AdamW(theta, g, lr(step))     then the scheduler advances one step

Under DDP the gradient all-reduce runs only on the last micro-batch (`no_sync` before it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 autocast on CUDA and fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision == "bf16"` (weights and optimizer state stay fp32); a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: torch.nn.Module, micro_batches: Sequence[Any],
               loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
               optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
               grad_clip: float, device: torch.device, precision: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward/backward every micro-batch, clip, step; returns (mean loss, grad norm) as device tensors."""
    n = len(micro_batches)
    ddp = getattr(model, "_orig_mod", model)  # torch.compile wraps the DDP module
    total = torch.zeros((), device=device)
    for i, batch in enumerate(micro_batches):
        last = i == n - 1
        sync = ddp.no_sync() if isinstance(ddp, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            with autocast(device, precision):
                loss = loss_fn(model, batch)
            (loss / n).backward()
        total += loss.detach().float()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n, grad_norm
