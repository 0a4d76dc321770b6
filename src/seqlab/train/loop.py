"""The optimizer-step loop every recipe shares: step, log, evaluate + checkpoint, stop early, Ctrl-C / SIGTERM.

A recipe plugs in what differs (`RecipeHooks`): where a step's micro-batches come from, the loss,
the evaluation, and the extra state a checkpoint needs to resume exactly. Its set-up (a
`seqlab.train.trainable.RecipeSetup`) carries the common pieces (config, run, distributed info,
models, optimizer, scheduler, best tracker).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from seqlab.train.distributed import all_reduce_mean, all_reduce_sum, any_rank, gather_objects, weights_digest
from seqlab.train.interrupt import InterruptFlag
from seqlab.train.metrics import MetricsWriter
from seqlab.train.progress import Throughput, TrainProgress
from seqlab.train.state import save_checkpoint
from seqlab.train.step import train_step
from seqlab.train.trainable import RecipeSetup

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


@dataclass
class RecipeHooks:
    next_batches: Callable[[], tuple[list[Any], torch.Tensor | int]]
    """This rank's micro-batches for one optimizer step, and the tokens they train on (a number, or a
    device scalar so that counting never waits for the device)."""
    loss_fn: Callable[[int], LossFn]
    """The loss at optimizer step `step` (0-based): loss(model, micro_batch) -> scalar."""
    evaluate: Callable[[int, MetricsWriter, TrainProgress], float]
    """Validate, keep the best weights, print samples, checkpoint; returns the val loss."""
    extras: Callable[[], dict[str, Any]]
    """The recipe's resumable state (data position, best tracker) for a checkpoint."""
    log_fields: Callable[[int], dict[str, Any]] = field(default=lambda step: {})
    """Extra fields of the training-loss record at optimizer step `step`."""


def run_loop(setup: RecipeSetup, hooks: RecipeHooks) -> dict[str, Any]:
    """Train from `setup.start_step` to `train.max_steps`; returns the run summary (also the last metrics line)."""
    train_cfg, info = setup.cfg.train, setup.info
    metrics = MetricsWriter(setup.run, info.is_main, resume_step=setup.start_step if setup.resumed else None)
    step, last_val, stopped_early = setup.start_step, math.nan, False
    started, clock = time.perf_counter(), Throughput()
    tick_tokens = torch.zeros((), device=setup.device)
    try:
        with TrainProgress(train_cfg.max_steps, step, enabled=info.is_main) as bar, InterruptFlag() as interrupt:
            while step < train_cfg.max_steps:
                lr = setup.scheduler.get_last_lr()[0]
                batches, tokens = hooks.next_batches()
                tick_tokens += tokens
                loss, grad_norm = train_step(setup.model, batches, hooks.loss_fn(step), setup.optimizer,
                                             setup.scheduler, train_cfg.grad_clip, setup.device, setup.precision)
                step += 1
                if step % train_cfg.log_interval == 0 or step == train_cfg.max_steps:
                    loss_value = all_reduce_mean(loss, info).item()  # waits for the device
                    tokens_per_s = clock.tick(all_reduce_sum(tick_tokens.float(), info).item())
                    tick_tokens = torch.zeros((), device=setup.device)
                    record = {"step": step, "train_loss": loss_value, "lr": lr, "tokens_per_s": tokens_per_s,
                              **hooks.log_fields(step - 1)}
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm.item()
                    metrics.write(record)
                    bar.update(step, loss_value, tokens_per_s)
                if step % train_cfg.eval_interval == 0 or step == train_cfg.max_steps:
                    last_val = hooks.evaluate(step, metrics, bar)
                    clock.restart()
                    if setup.tracker.should_stop:
                        stopped_early = True
                        bar.print(f"early stopping: no improvement in {train_cfg.patience} evaluations")
                        break
                checks = not info.enabled or step % train_cfg.log_interval == 0  # under DDP, agree only at log steps
                if checks and any_rank(interrupt.requested, info, setup.device):
                    if step % train_cfg.eval_interval:
                        save_checkpoint(setup.run, step, setup.raw_model, setup.optimizer, setup.scheduler,
                                        hooks.extras(), info, setup.device)
                    where = (f"checkpoint saved at step {step} in {setup.run.path}; "
                             f"continue with `seqlab train --resume {setup.run.path}`")
                    raise interrupt.stop(f"interrupted: {where}" if info.is_main else "interrupted")
        summary = {
            "step": step, "event": "end", "run": str(setup.run.path), "best_val_loss": setup.tracker.best,
            "best_step": setup.tracker.best_step, "final_val_loss": last_val, "stopped_early": stopped_early,
            "tokens_per_s": clock.overall, "wall_s": time.perf_counter() - started, "device": str(setup.device),
            "world_size": info.world_size, "weights_sha256": gather_objects(weights_digest(setup.raw_model), info),
        }
        metrics.write(summary, tensorboard=False)
        return summary
    finally:
        metrics.close()
