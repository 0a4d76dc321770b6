"""The language-model recipe: `build_setup` builds everything from a Config, `fit` trains, `validate` measures.

    L(theta) = -(1/BT) sum_b sum_t log p_theta(x_{b,t+1} | x_{b,<=t})     on random train windows
    val loss = the same, in nats per token, over the whole val split in non-overlapping windows

`train_lm(config, run_dir)` is what `seqlab train` runs; `train_lm(..., resume=True)` continues a
run from its last checkpoint exactly (model, optimizer, scheduler, RNG and data position).
With `distill.teacher` set the model is a distilled student (seqlab.train.distill: word-level KD's loss,
or sequence-level KD's train stream).
Under `torchrun` each rank trains on its slice of every global batch (see `batches.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.checkpoint import save_weights
from seqlab.config import Config
from seqlab.data.prepare import check_min_length
from seqlab.decode.generate import generate
from seqlab.decode.options import run_token_options
from seqlab.device import seed_everything
from seqlab.errors import SeqlabError
from seqlab.eval.perplexity import lm_nll
from seqlab.models import build_model
from seqlab.runs import RunDir
from seqlab.train import distill
from seqlab.train.batches import WindowSampler
from seqlab.train.distributed import (
    DistInfo,
    all_reduce_sum,
    setup_distributed,
    teardown_distributed,
)
from seqlab.train.loop import RecipeHooks, run_loop
from seqlab.train.metrics import MetricsWriter
from seqlab.train.progress import TrainProgress
from seqlab.train.state import save_checkpoint
from seqlab.train.step import autocast
from seqlab.train.trainable import RecipeSetup, build_recipe_setup, prepare_run_data, start_run


@dataclass
class LMSetup(RecipeSetup):
    """Everything `fit` needs: the shared set-up, the val split's token stream and the train window sampler."""

    val_ids: torch.Tensor
    sampler: WindowSampler
    teacher: torch.nn.Module | None = None  # word-level KD's frozen teacher (seqlab.train.distill)


def train_lm(cfg: Config, run_dir: str | Path, device_name: str = "auto", resume: bool = False,
             init_from: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) a language model into `run_dir`; returns the run summary (rank 0's view)."""
    info, device = setup_distributed(device_name)
    try:
        return fit(build_setup(cfg, RunDir(Path(run_dir)), info, device, resume,
                         None if init_from is None else Path(init_from)))
    finally:
        teardown_distributed()


def build_setup(cfg: Config, run: RunDir, info: DistInfo, device: torch.device, resume: bool,
                init_from: Path | None = None) -> LMSetup:
    if cfg.data.task not in ("lm", "labelled"):  # labelled: the stream of `<label:L> text <eos>`
        raise SeqlabError(f"the language-model recipe needs data.task: lm or labelled, got {cfg.data.task!r}")
    if cfg.model.arch not in ("rnn_lm", "transformer_lm"):
        raise SeqlabError(f"the language-model recipe trains rnn_lm or transformer_lm, got model.arch {cfg.model.arch!r}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(cfg.seed)
    data = prepare_run_data(cfg, run, info, resume, init_from)
    check_min_length(data.splits["train"], cfg.model.context_length)
    check_min_length(data.splits["val"], cfg.model.context_length)
    tokenizer = data.tokenizer
    start_run(run, cfg, tokenizer, info, device, resume, init_from)
    raw_model = build_model(cfg.model, tokenizer.vocab_size, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                            eos_id=tokenizer.eos_id).to(device)
    train_ids, teacher = data.splits["train"].ids, distill.load_teacher(cfg, run, tokenizer, info, device, resume)
    if teacher is not None and cfg.distill.kind == "sequence":  # the teacher's text replaces the train split's
        train_ids = distill.distilled_lm_stream(cfg, run, teacher.model, train_ids, tokenizer, info, device)
        teacher = None  # it is done teaching
    sampler = WindowSampler(train_ids.to(device), cfg.model.context_length, cfg.train.batch_size,
                            cfg.train.grad_accum, cfg.seed, info.rank, info.world_size)
    common = build_recipe_setup(cfg, run, info, device, tokenizer, raw_model, resume, "sampler", sampler,
                                init_from)
    return LMSetup(**vars(common), val_ids=data.splits["val"].ids, sampler=sampler,
                   teacher=None if teacher is None else teacher.model)


def lm_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch  # (B, T), (B, T)
    return model(inputs, targets)[1]


def fit(setup: LMSetup) -> dict[str, Any]:
    """The shared training loop (seqlab.train.loop) over random windows of the token stream."""

    def next_batches() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
        batches = setup.sampler.next_step()  # this rank's micro-batches: (inputs, targets) of (b, T)
        return batches, sum(x.numel() for x, _ in batches)

    def evaluate(step: int, metrics: MetricsWriter, bar: TrainProgress) -> float:
        return evaluate_and_checkpoint(setup, step, metrics, bar)

    loss = lm_loss if setup.teacher is None else distill.lm_word_loss(setup.teacher, setup.cfg.distill)
    return run_loop(setup, RecipeHooks(next_batches, lambda step: loss, evaluate, lambda: _extras(setup)))


def evaluate_and_checkpoint(setup: LMSetup, step: int, metrics: MetricsWriter, bar: TrainProgress) -> float:
    """Validate, keep the best weights, print samples, save the checkpoint; returns the val loss."""
    train_cfg = setup.cfg.train
    val = validate(setup.raw_model, setup.val_ids, setup.cfg.model.context_length, train_cfg.batch_size,
                   train_cfg.eval_batches, setup.info, setup.device, setup.precision)
    tracker = setup.tracker
    improved = tracker.update(step, val)
    metrics.write({"step": step, "val_loss": val, "val_ppl": math.exp(min(val, 700.0)),
                   "best_val_loss": tracker.best})
    if setup.info.is_main:
        if improved:
            save_weights(setup.raw_model, setup.run.best, metadata={"step": str(step)})
        bar.print(f"step {step}: val loss {val:.4f} (ppl {math.exp(min(val, 700.0)):.2f})"
                  f"{' (best)' if improved else f', best {tracker.best:.4f} at step {tracker.best_step}'}")
        for i, text in enumerate(samples(setup, step), 1):
            bar.print(f"  sample {i}:\n  | " + text.replace("\n", "\n  | "))
    save_checkpoint(setup.run, step, setup.raw_model, setup.optimizer, setup.scheduler, _extras(setup), setup.info,
                    setup.device)
    return val


def _extras(setup: LMSetup) -> dict[str, Any]:
    return {"sampler": setup.sampler.state_dict(), "tracker": setup.tracker.state_dict()}


def validate(model: torch.nn.Module, val_ids: torch.Tensor, context_length: int, batch_size: int,
             eval_batches: int | None, info: DistInfo, device: torch.device, precision: str) -> float:
    """Mean val NLL over non-overlapping windows (the first `eval_batches` x `batch_size`, or all),
    each rank scoring a contiguous share of the windows."""
    n_targets = val_ids.numel() - 1
    if eval_batches is not None:
        n_targets = min(n_targets, eval_batches * batch_size * context_length)
    n_windows = math.ceil(n_targets / context_length)
    lo = min(n_targets, info.rank * n_windows // info.world_size * context_length)
    hi = min(n_targets, (info.rank + 1) * n_windows // info.world_size * context_length)
    nll_sum = 0.0
    if hi > lo:
        with autocast(device, precision):
            nll_sum = lm_nll(model, val_ids[lo:hi + 1], context_length, batch_size, device) * (hi - lo)
    total = all_reduce_sum(torch.tensor([nll_sum, hi - lo], dtype=torch.float64, device=device), info)
    return (total[0] / total[1]).item()


def samples(setup: LMSetup, step: int) -> list[str]:
    """`train.samples` continuations of the val split's first token, sampled with the config's decoding
    settings from their own generator (so printing samples never moves the training RNG)."""
    if setup.cfg.train.samples == 0:
        return []
    decode_cfg = setup.cfg.decode
    suppress = run_token_options(setup.tokenizer, decode_cfg.suppress_unk).get("suppress_tokens")
    prompt = setup.val_ids[:1].to(setup.device).unsqueeze(0)  # (1, 1)
    try:
        with autocast(setup.device, setup.precision):
            out = generate(setup.raw_model.eval(), prompt, max_new_tokens=min(decode_cfg.max_new_tokens, 200),
                           do_sample=True, temperature=decode_cfg.temperature, top_k=decode_cfg.top_k,
                           top_p=decode_cfg.top_p, num_return_sequences=setup.cfg.train.samples,
                           seed=setup.cfg.seed + step, suppress_tokens=suppress)
    finally:
        setup.raw_model.train()
    return [setup.tokenizer.decode(row) for row in out.sequences.tolist()]
