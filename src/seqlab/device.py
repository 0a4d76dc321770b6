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


def memory_bytes(device: torch.device | str = "cpu") -> tuple[int | None, str]:
    """(bytes, what) of the memory a model on `device` lives in: a CUDA device's own memory, else the
    machine's physical RAM (bytes None where the platform does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).total_memory, f"{device} ({torch.cuda.get_device_name(index)})"
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf names (e.g. Windows)
        return None, "this machine"
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:  # a container's memory limit, where it is lower than the RAM
            with open(limit_file, encoding="ascii") as f:
                limit = int(f.read().strip())
        except (OSError, ValueError):  # no such file, or "max"
            continue
        if limit < physical:
            return limit, "this container"
    return physical, "this machine"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run is reproducible; seeds are in [0, 2^63)."""
    from seqlab.config import check_seed

    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
