"""What every recipe sets up around its model: the data (rank 0 first), the run directory, optimizer,
schedule, best tracker, resume, and the DDP / torch.compile wrappers.

How a run starts (`resume`, `init_from`):
  new run          the tokenizer is trained on the train split (or read from `RUN/prepared/`, the cache
                   `seqlab data prepare --out RUN` writes, when its key matches this config and seed)
  init_from=SRC    a new run from another run's weights: SRC's tokenizer encodes the new corpus (words
                   it lacks become <unk>, their share is printed), SRC's best weights (else its last) are
                   loaded, the optimizer and schedule start afresh
  resume           the run's tokenizer, weights, optimizer, schedule, RNG and data position from its
                   checkpoint. A run that has no checkpoint yet (killed before its first evaluation)
                   starts again from step 0 with its own config and tokenizer. A larger train.max_steps
                   continues a finished run: the schedule it started with is kept, so the learning rate
                   stays at train.min_lr after the old max_steps (no jump back up the cosine).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from seqlab.checkpoint import load_weights
from seqlab.compress.prune import hold_zeros
from seqlab.config import Config
from seqlab.data.prepare import PreparedData, prepare_data
from seqlab.data.tokenizers import Tokenizer, load_tokenizer
from seqlab.errors import SeqlabError
from seqlab.models.memory import check_memory
from seqlab.runs import RunDir
from seqlab.train.distill import absolute_teacher, teacher_weights
from seqlab.train.distributed import DistInfo, barrier
from seqlab.train.early_stopping import BestTracker
from seqlab.train.fingerprint import absolute_corpus, write_fingerprint
from seqlab.train.optim import build_optimizer, build_scheduler
from seqlab.train.state import has_checkpoint, load_checkpoint, remove_stale_temporaries
from seqlab.train.step import resolve_precision


@dataclass
class RecipeSetup:
    """What the shared loop (seqlab.train.loop) trains; a recipe's set-up extends it with its data.
    `model` is what trains (maybe DDP-wrapped and compiled), `raw_model` the module it wraps."""

    cfg: Config
    run: RunDir
    info: DistInfo
    device: torch.device
    precision: str  # train.precision resolved: "fp32" or "bf16"
    tokenizer: Tokenizer
    raw_model: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tracker: BestTracker
    start_step: int
    resumed: bool


def prepare_run_data(cfg: Config, run: RunDir, info: DistInfo, resume: bool,
                     init_from: Path | None = None) -> PreparedData:
    """The run's splits and tokenizer (a resumed run keeps its tokenizer, `init_from` gives its run's, a
    distilled student (`distill.teacher`) its teacher's).
    Under DDP rank 0 prepares and caches them first and the other ranks then read that cache, so no two
    processes write it at once."""
    tokenizer = None
    if init_from is not None:
        tokenizer = load_tokenizer(RunDir(init_from).tokenizer)
    elif resume and (has_checkpoint(run) or run.tokenizer.is_file()):
        tokenizer = load_tokenizer(run.tokenizer)
    elif cfg.distill.teacher is not None:  # a distilled student speaks its teacher's vocabulary
        teacher_weights(cfg.distill.teacher)  # a one-line error when the teacher is not a trained run
        tokenizer = load_tokenizer(RunDir(Path(cfg.distill.teacher)).tokenizer)
    prepared = run.path / "prepared"  # `seqlab data prepare --out RUN` caches here
    own_cache = tokenizer is None and prepared.is_dir()
    before = {p.name for p in prepared.iterdir()} if own_cache else set()
    if not info.is_main:
        barrier(info)
    vocab = None if tokenizer is None else tokenizer.vocab_size
    data = prepare_data(cfg.data, cfg.seed, tokenizer=tokenizer, cache_dir=run.path if own_cache else None)
    if info.is_main:
        barrier(info)
        if own_cache:
            _say(f"using the data prepared in {data.cache_path}" if data.cache_path.name in before else
                 f"{prepared} holds data prepared with other settings ({', '.join(sorted(before)) or 'none'}); "
                 f"prepared this config's into {data.cache_path} (`seqlab data prepare CORPUS --preset PRESET "
                 f"--seed {cfg.seed} --out {run.path}` prepares exactly what `seqlab train PRESET` uses)")
        if init_from is not None:
            ids = _train_ids(data)
            _say(f"--init-from {init_from}: the new corpus's train split is {ids.numel():,} tokens, "
                 f"{oov_rate(ids, data.tokenizer.unk_id):.2%} of them unknown to its tokenizer (<unk>)")
    if vocab is not None and data.tokenizer.vocab_size != vocab:
        raise SeqlabError(f"{cfg.data.corpus!r} has labels that {init_from or run.path}'s tokenizer lacks (its "
                          f"labels: {', '.join(data.labels)}); a model only knows the labels it was trained on: "
                          "use a corpus with those labels, or train a new run without --init-from")
    return data


def oov_rate(ids: torch.Tensor, unk_id: int) -> float:
    """The share of <unk> among token ids `ids`."""
    return float((ids == unk_id).float().mean()) if ids.numel() else 0.0


def _train_ids(data: PreparedData) -> torch.Tensor:
    """The train split's token ids: a stream's, or every source and target token of its pairs."""
    split = data.splits["train"]
    if split.ids is not None:
        return split.ids
    return torch.tensor([i for s, t in split.pairs or [] for i in (*s, *t)], dtype=torch.long)


def start_run(run: RunDir, cfg: Config, tokenizer: Any, info: DistInfo, device: torch.device, resume: bool,
              init_from: Path | None = None) -> None:
    """Refuse a model whose training cannot fit `device` (every rank), before anything is written. Then a
    new run directory (or one restarted from step 0) gets its config (the corpus file as an absolute path),
    fingerprint, run.json and tokenizer (rank 0); a resumed one keeps them."""
    check_memory(cfg.model, tokenizer.vocab_size, device, cfg.train)
    if not info.is_main or (resume and has_checkpoint(run)):
        return
    run.path.mkdir(parents=True, exist_ok=True)
    if resume:  # restarted from step 0: what a kill left of atomic writes goes, as on any resume
        remove_stale_temporaries(run)
    cfg = absolute_teacher(absolute_corpus(cfg))
    run.write_config(cfg)
    write_fingerprint(run, cfg)
    extra = None
    if init_from is not None:
        extra = {"init_from": {"run": str(init_from.resolve()), "weights": str(init_weights(init_from).resolve())}}
    run.write_info(cfg.seed, extra)
    tokenizer.save(run.tokenizer)


def init_weights(source: Path) -> Path:
    """The weights a run started `--init-from source` loads: its best, else its last."""
    run = RunDir(source)
    return run.best if run.best.is_file() else run.model


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_recipe_setup(cfg: Config, run: RunDir, info: DistInfo, device: torch.device, tokenizer: Tokenizer,
                       raw_model: torch.nn.Module, resume: bool, position_key: str, position: Any,
                       init_from: Path | None = None) -> RecipeSetup:
    """Optimizer, schedule and best tracker for `raw_model` (first given `init_from`'s weights); on resume,
    restore them, the weights and the data `position` (a recipe's sampler, checkpointed under
    `position_key`) from the run's checkpoint."""
    torch.manual_seed(cfg.seed + info.rank)  # dropout masks differ across ranks, not with the model's init
    train_cfg = cfg.train
    if init_from is not None:
        load_weights(raw_model, init_weights(init_from), hint=f"--init-from {init_from} needs a run of this model")
    optimizer = build_optimizer(raw_model, train_cfg.lr, train_cfg.weight_decay, (train_cfg.beta1, train_cfg.beta2),
                                device)
    scheduler = build_scheduler(optimizer, train_cfg.lr, train_cfg.min_lr, train_cfg.warmup_steps,
                                train_cfg.max_steps)
    tracker = BestTracker(train_cfg.patience)
    start_step = 0
    if resume and has_checkpoint(run):
        start_step, extras = load_checkpoint(run, raw_model, optimizer, scheduler, info, device)
        position.load_state_dict(extras[position_key])
        tracker.load_state_dict(extras["tracker"])
        _check_resumable(run, cfg, start_step, tracker)
        _extend(run, cfg, start_step, scheduler, info)
    if train_cfg.keep_zeros:  # a pruned run's zeros (from init_from, or the checkpoint) stay zeros
        hold_zeros(raw_model, optimizer)
    model = raw_model
    if info.enabled:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if train_cfg.compile:
        model = torch.compile(model)
    return RecipeSetup(cfg=cfg, run=run, info=info, device=device,
                       precision=resolve_precision(train_cfg.precision, device), tokenizer=tokenizer,
                       raw_model=raw_model, model=model, optimizer=optimizer, scheduler=scheduler, tracker=tracker,
                       start_step=start_step, resumed=resume)


def _check_resumable(run: RunDir, cfg: Config, step: int, tracker: BestTracker) -> None:
    """Refuse to resume a run that stopped early or has reached train.max_steps, saying what to do."""
    if tracker.should_stop:
        raise SeqlabError(f"nothing to resume: {run.path} stopped early at step {step} (no improvement in "
                          f"train.patience={cfg.train.patience} evaluations; best val loss {tracker.best:.4f} at "
                          f"step {tracker.best_step}, in {run.best.name}); to train on, start a new run from it: "
                          f"seqlab train {run.config} --init-from {run.path} --out NEW_RUN (e.g. with a lower "
                          "train.lr)")
    if step >= cfg.train.max_steps:
        where = ("finished at step" if step == cfg.train.max_steps else
                 f"is beyond train.max_steps={cfg.train.max_steps}, at step")
        raise SeqlabError(f"nothing to resume: {run.path} {where} {step}; continue it for more steps with "
                          f"`seqlab train --resume {run.path} --set train.max_steps=N` (N > {step})")


def _extend(run: RunDir, cfg: Config, step: int, scheduler: Any, info: DistInfo) -> None:
    """A new train.max_steps goes into config.yaml (rank 0), and a resume towards another max_steps than the
    run started with says what the learning rate does."""
    if not info.is_main:
        return
    if run.read_config().train.max_steps != cfg.train.max_steps:
        run.write_config(cfg)
    schedule_end = scheduler.lr_lambdas[0].total_steps  # restored from the checkpoint: the run's first max_steps
    if cfg.train.max_steps != schedule_end:
        after = (f"; the learning rate stays at train.min_lr ({cfg.train.min_lr:g}) after step {schedule_end}, where "
                 "the run's warm-up + cosine schedule ends" if cfg.train.max_steps > schedule_end else "")
        _say(f"continuing {run.path} from step {step} to train.max_steps={cfg.train.max_steps} (it started with "
             f"{schedule_end}){after}")
