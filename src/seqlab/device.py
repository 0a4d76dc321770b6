"""Device selection and seeding shared by every command that computes."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from seqlab.errors import SeqlabError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` is CUDA when present, else CPU. Under torchrun, CUDA means this rank's local GPU."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise SeqlabError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SeqlabError("--device cuda asked for, but no CUDA device is available (use --device cpu)")
        if name == "cuda" and "LOCAL_RANK" in os.environ:
            name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
