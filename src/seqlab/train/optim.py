"""AdamW with decoupled weight decay on matrices only, and a linear-warmup + cosine learning-rate schedule.

    lr(s) = lr_max * (s + 1) / warmup                                       s < warmup
    lr(s) = lr_min + (lr_max - lr_min) * (1 + cos(pi * p)) / 2,  p = (s - warmup) / (total - warmup)
    lr(s) = lr_min                                                          s >= total

Weight decay applies to every parameter with two or more dimensions (linear and embedding matrices);
biases, LayerNorm gains and other vectors are not decayed (as in GPT-2 / nanoGPT).
"""

from __future__ import annotations

import math

import torch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW over `model`'s trainable parameters; the fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type == "cuda" or None)


class WarmupCosine:
    """The multiplier of the peak learning rate at step s (an object, so LambdaLR checkpoints its fields)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step >= self.total_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, lr: float, min_lr: float, warmup_steps: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to `lr` over `warmup_steps`, then cosine decay to `min_lr` at `total_steps`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min(1.0, min_lr / lr)))
