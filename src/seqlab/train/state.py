"""Exact resume: everything a run needs to continue bit-for-bit, stored without pickle.

A checkpoint is `RUN/trainer_state.{safetensors,json}` (see `seqlab.checkpoint.save_state`) holding
the step, the model, optimizer and scheduler state, every rank's RNG states (Python, NumPy, torch
CPU and CUDA) and recipe extras (data position, best-loss tracker); `RUN/model.safetensors` is then
written for loading. The model is inside the trainer state too, so a kill between the two writes
never pairs weights from one step with an optimizer from another.

The pair is first written beside the old one as `trainer_state_next.*` (its JSON, written last, marks
it complete) and then moved into place; a `kill -9` at any moment leaves the old or the new
checkpoint, and the next load finishes an interrupted move.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.checkpoint import load_state, save_state, save_weights
from seqlab.runs import RunDir
from seqlab.train.distributed import DistInfo, barrier, gather_objects


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (a checkpointable nest of tensors and scalars)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(run: RunDir, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, extras: dict[str, Any],
                    info: DistInfo, device: torch.device) -> None:
    """Collective under DDP (every rank contributes its RNG state); rank 0 writes. `model` is unwrapped."""
    rngs = gather_objects(rng_state(device), info)
    if not info.is_main:
        return
    save_state(_pending(run), {
        "step": step, "world_size": info.world_size, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": rngs, "extras": extras,
    })
    _finish_commit(run)
    save_weights(model, run.model, metadata={"step": str(step)})


def load_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, info: DistInfo,
                    device: torch.device) -> tuple[int, dict[str, Any]]:
    """Restore the (unwrapped) model, optimizer, scheduler and this rank's RNG; returns (step, extras)."""
    if info.is_main:
        _finish_commit(run)
    barrier(info)
    state = load_state(run.trainer_state)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rngs = state["rng"]
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank], device)
    else:  # a different number of ranks: data order is kept, dropout masks are reseeded per rank
        set_rng_state(rngs[0], device)
        torch.manual_seed(int(torch.randint(2**31, (1,)).item()) + info.rank)
    return int(state["step"]), state["extras"]


def has_checkpoint(run: RunDir) -> bool:
    return run.trainer_state.with_suffix(".json").is_file() or _pending(run).with_suffix(".json").is_file()


def _pending(run: RunDir) -> Path:
    return run.path / "trainer_state_next"


def _finish_commit(run: RunDir) -> None:
    """Move a completely written pending checkpoint into place; drop an incomplete one."""
    pending = _pending(run)
    if not pending.with_suffix(".json").is_file():
        pending.with_suffix(".safetensors").unlink(missing_ok=True)
        return
    if pending.with_suffix(".safetensors").is_file():
        os.replace(pending.with_suffix(".safetensors"), run.trainer_state.with_suffix(".safetensors"))
    os.replace(pending.with_suffix(".json"), run.trainer_state.with_suffix(".json"))
