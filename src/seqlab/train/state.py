"""Exact resume: everything a run needs to continue bit-for-bit, stored without pickle.

A checkpoint is `RUN/trainer_state.{safetensors,json}` (see `seqlab.checkpoint.save_state`) holding
the step, the model, optimizer and scheduler state, every rank's RNG states (Python, NumPy, torch
CPU and CUDA) and recipe extras (data position, best-loss tracker); `RUN/model.safetensors` is then
written for loading. The model is inside the trainer state too, so a kill between the two writes
never pairs weights from one step with an optimizer from another.

The pair is first written beside the old one as `trainer_state_next.*` (its JSON, written last, marks
it complete) and then moved into place; a `kill -9` at any moment leaves the old or the new
checkpoint, and the next load finishes an interrupted move. The pending pair is promoted only when it
is complete (its JSON parses and carries the token in a complete tensors file's header); a damaged one
is discarded with a one-line warning and the last good checkpoint is used.

Loading also removes the hidden temporaries (`.NAME.<random>.tmp*`, see `seqlab.io`) that a `kill -9`
in the middle of an atomic write leaves beside the run's own files.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.checkpoint import (
    check_weights,
    commit_state,
    finish_commit,
    load_state,
    pending_problem,
    save_weights,
)
from seqlab.errors import SeqlabError
from seqlab.runs import RunDir
from seqlab.train.distributed import DistInfo, barrier, gather_objects

STATE_HINT = ("restore it from a copy or start the run again (model.safetensors and best.safetensors "
              "may still be good for generate and eval)")
STATE_KEYS = ("step", "model", "optimizer", "scheduler", "rng", "extras")


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
    commit_state(run.trainer_state, {
        "step": step, "world_size": info.world_size, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": rngs, "extras": extras,
    })
    save_weights(model, run.model, metadata={"step": str(step)})


def load_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, info: DistInfo,
                    device: torch.device) -> tuple[int, dict[str, Any]]:
    """Restore the (unwrapped) model, optimizer, scheduler and this rank's RNG; returns (step, extras).

    A damaged trainer state, or one whose weights cannot be the model's, is a `SeqlabError`."""
    if info.is_main:
        finish_commit(run.trainer_state)
        remove_stale_temporaries(run)
    barrier(info)
    source = run.trainer_state.with_suffix(".safetensors")
    state = load_state(run.trainer_state, hint=STATE_HINT)
    missing = [k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing:
        raise SeqlabError(f"{source.with_suffix('.json')} is not a trainer state (no {', '.join(missing)}); "
                          f"{STATE_HINT}")
    check_weights(str(source), state["model"], model.state_dict(), STATE_HINT)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:  # config.yaml edited since: other layers or sizes
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
        raise SeqlabError(f"{source} does not match the model of {run.config.name}: {lines[min(1, len(lines) - 1)]}; "
                          "resume with the config the run was trained with") from e
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
    """A committed checkpoint, or a complete pending one that loading will move into place."""
    return run.trainer_state.with_suffix(".json").is_file() or pending_problem(run.trainer_state) is None


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(?:\.[^.]+)?)")  # see seqlab.io


def remove_stale_temporaries(run: RunDir) -> None:
    """Delete what kills left of atomic writes in the run directory: `seqlab.io` names a temporary
    `.NAME.` + mkstemp's 8 random characters + `.tmp` (+ NAME's suffix for `atomic_path`). The resuming
    trainer owns the run (no other process writes in it), so every such file is stale; nothing else is
    touched, and a reader of the run's fixed names never opens one."""
    for entry in run.path.iterdir():
        match = _TEMPORARY.fullmatch(entry.name)
        if match and match["suffix"] in ("", Path(match["name"]).suffix) and entry.is_file():
            entry.unlink(missing_ok=True)
