"""The optimizer-step loop every recipe shares: step, log, evaluate + checkpoint, stop early, Ctrl-C / SIGTERM.

A recipe plugs in what differs (`RecipeHooks`): where a step's micro-batches come from, the loss,
the evaluation, and the extra state a checkpoint needs to resume exactly. Its setup object carries
the common pieces (config, run, distributed info, models, optimizer, scheduler, best tracker).
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


def run_loop(s: Any, hooks: RecipeHooks) -> dict[str, Any]:
    """Train from `s.start_step` to `train.max_steps`; returns the run summary (also the last metrics line)."""
    t, info = s.cfg.train, s.info
    metrics = MetricsWriter(s.run, info.is_main, resume_step=s.start_step if s.resumed else None)
    step, last_val, stopped_early = s.start_step, math.nan, False
    started, clock = time.perf_counter(), Throughput()
    tick_tokens = torch.zeros((), device=s.device)
    try:
        with TrainProgress(t.max_steps, step, enabled=info.is_main) as bar, InterruptFlag() as interrupt:
            while step < t.max_steps:
                lr = s.scheduler.get_last_lr()[0]
                batches, tokens = hooks.next_batches()
                tick_tokens += tokens
                loss, grad_norm = train_step(s.model, batches, hooks.loss_fn(step), s.optimizer, s.scheduler,
                                             t.grad_clip, s.device, s.precision)
                step += 1
                if step % t.log_interval == 0 or step == t.max_steps:
                    loss_value = all_reduce_mean(loss, info).item()  # waits for the device
                    tokens_per_s = clock.tick(all_reduce_sum(tick_tokens.float(), info).item())
                    tick_tokens = torch.zeros((), device=s.device)
                    record = {"step": step, "train_loss": loss_value, "lr": lr, "tokens_per_s": tokens_per_s,
                              **hooks.log_fields(step - 1)}
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm.item()
                    metrics.write(record)
                    bar.update(step, loss_value, tokens_per_s)
                if step % t.eval_interval == 0 or step == t.max_steps:
                    last_val = hooks.evaluate(step, metrics, bar)
                    clock.restart()
                    if s.tracker.should_stop:
                        stopped_early = True
                        bar.print(f"early stopping: no improvement in {t.patience} evaluations")
                        break
                checks = not info.enabled or step % t.log_interval == 0  # under DDP, agree only at log steps
                if checks and any_rank(interrupt.requested, info, s.device):
                    if step % t.eval_interval:
                        save_checkpoint(s.run, step, s.raw_model, s.optimizer, s.scheduler, hooks.extras(), info,
                                        s.device)
                    where = (f"checkpoint saved at step {step} in {s.run.path}; "
                             f"continue with `seqlab train --resume {s.run.path}`")
                    raise interrupt.stop(f"interrupted: {where}" if info.is_main else "interrupted")
        summary = {
            "step": step, "event": "end", "run": str(s.run.path), "best_val_loss": s.tracker.best,
            "best_step": s.tracker.best_step, "final_val_loss": last_val, "stopped_early": stopped_early,
            "tokens_per_s": clock.overall, "wall_s": time.perf_counter() - started, "device": str(s.device),
            "world_size": info.world_size, "weights_sha256": gather_objects(weights_digest(s.raw_model), info),
        }
        metrics.write(summary, tensorboard=False)
        return summary
    finally:
        metrics.close()
