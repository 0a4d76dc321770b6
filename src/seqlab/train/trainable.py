"""What every recipe sets up around its model: the data (rank 0 first), the run directory, optimizer,
schedule, best tracker, resume, and the DDP / torch.compile wrappers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from seqlab.config import Config
from seqlab.data.prepare import PreparedData, prepare_data
from seqlab.data.tokenizers import load_tokenizer
from seqlab.errors import SeqlabError
from seqlab.runs import RunDir
from seqlab.train.distributed import DistInfo, barrier
from seqlab.train.early_stopping import BestTracker
from seqlab.train.optim import build_optimizer, build_scheduler
from seqlab.train.state import load_checkpoint


@dataclass
class Trainable:
    model: torch.nn.Module  # what trains: raw_model, maybe DDP-wrapped and compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tracker: BestTracker
    start_step: int


def prepare_run_data(cfg: Config, run: RunDir, info: DistInfo, resume: bool) -> PreparedData:
    """The run's splits and tokenizer (a resumed run keeps its tokenizer). Under DDP rank 0 prepares and
    caches them first and the other ranks then read that cache, so no two processes write it at once."""
    if not info.is_main:
        barrier(info)
    data = prepare_data(cfg.data, cfg.seed, tokenizer=load_tokenizer(run.tokenizer) if resume else None)
    if info.is_main:
        barrier(info)
    return data


def start_run(run: RunDir, cfg: Config, tokenizer: Any, info: DistInfo, resume: bool) -> None:
    """A new run directory gets its config, run.json and tokenizer (rank 0); a resumed one keeps them."""
    if info.is_main and not resume:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)
        run.write_info(cfg.seed)
        tokenizer.save(run.tokenizer)


def build_trainable(cfg: Config, run: RunDir, info: DistInfo, device: torch.device, raw_model: torch.nn.Module,
                    resume: bool, position_key: str, position: Any) -> Trainable:
    """Optimizer, schedule and best tracker for `raw_model`; on resume, restore them, the weights and the
    data `position` (a recipe's sampler, checkpointed under `position_key`) from the run's checkpoint."""
    torch.manual_seed(cfg.seed + info.rank)  # dropout masks differ across ranks, not with the model's init
    t = cfg.train
    optimizer = build_optimizer(raw_model, t.lr, t.weight_decay, (t.beta1, t.beta2), device)
    scheduler = build_scheduler(optimizer, t.lr, t.min_lr, t.warmup_steps, t.max_steps)
    tracker = BestTracker(t.patience)
    start_step = 0
    if resume:
        start_step, extras = load_checkpoint(run, raw_model, optimizer, scheduler, info, device)
        position.load_state_dict(extras[position_key])
        tracker.load_state_dict(extras["tracker"])
        if start_step >= t.max_steps or tracker.should_stop:
            raise SeqlabError(f"nothing to resume: {run.path} finished at step {start_step}")
    model = raw_model
    if info.enabled:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        model = torch.compile(model)
    return Trainable(model, optimizer, scheduler, tracker, start_step)
