"""The seq2seq recipe (task "pairs"): `setup` builds everything from a Config, `fit` trains, `validate` measures.

    decoder input  = <bos> y_1 .. y_n          targets = y_1 .. y_n <eos>
    L(theta) = -(1/N) sum over real target tokens of log p_theta(y_t | y_<t, x)     (pads: IGNORE_INDEX)
    val loss = the same over the whole val split (or `train.eval_batches` batches); ppl = exp(val loss)

Batches are bucketed by length (`pair_batches.py`). With `train.scheduled_sampling = k` (seq2seq_rnn only)
the teacher-forcing probability at step s is max(0, 1 - k s) (Bengio et al. 2015, linear decay).
Optimizer, schedule, checkpoints, exact resume, metrics, progress and DDP are the LM recipe's pieces.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.checkpoint import save_weights
from seqlab.config import Config
from seqlab.data.prepare import PreparedData
from seqlab.data.tokenizers import Tokenizer
from seqlab.device import seed_everything
from seqlab.errors import ConfigError, SeqlabError
from seqlab.io import write_json
from seqlab.models import build_model
from seqlab.runs import RunDir
from seqlab.train.distributed import (
    DistInfo,
    all_reduce_sum,
    setup_distributed,
    teardown_distributed,
)
from seqlab.train.early_stopping import BestTracker
from seqlab.train.loop import RecipeHooks, run_loop
from seqlab.train.metrics import MetricsWriter
from seqlab.train.pair_batches import IGNORE_INDEX, Batch, Pair, PairBatcher, collate_pairs, eval_batches
from seqlab.train.progress import TrainProgress
from seqlab.train.state import save_checkpoint
from seqlab.train.step import autocast, resolve_precision
from seqlab.train.trainable import build_trainable, prepare_run_data, start_run


@dataclass
class Seq2SeqSetup:
    """Everything `fit` needs; `model` is what trains (maybe compiled / DDP-wrapped), `raw_model` the module."""

    cfg: Config
    run: RunDir
    info: DistInfo
    device: torch.device
    precision: str
    tokenizer: Tokenizer
    train_pairs: list[Pair]
    val_pairs: list[Pair]
    val_texts: list[tuple[str, str]] | None  # the val pairs' own text (source, target), shown with the samples
    raw_model: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batcher: PairBatcher
    tracker: BestTracker
    start_step: int
    resumed: bool


def train_seq2seq(cfg: Config, run_dir: str | Path, device_name: str = "auto", resume: bool = False,
                  init_from: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) a seq2seq model into `run_dir`; returns the run summary (rank 0's view)."""
    info, device = setup_distributed(device_name)
    try:
        return fit(setup(cfg, RunDir(Path(run_dir)), info, device, resume,
                         None if init_from is None else Path(init_from)))
    finally:
        teardown_distributed()


def setup(cfg: Config, run: RunDir, info: DistInfo, device: torch.device, resume: bool,
          init_from: Path | None = None) -> Seq2SeqSetup:
    if cfg.data.task != "pairs":
        raise SeqlabError(f"the seq2seq recipe needs data.task: pairs, got {cfg.data.task!r}")
    if cfg.model.arch not in ("seq2seq_rnn", "seq2seq_transformer"):
        raise SeqlabError(f"the seq2seq recipe trains seq2seq_rnn or seq2seq_transformer, got {cfg.model.arch!r}")
    if cfg.train.scheduled_sampling > 0 and cfg.model.arch != "seq2seq_rnn":
        raise ConfigError("train.scheduled_sampling applies to model.arch seq2seq_rnn only (a Transformer decoder "
                          "is trained in parallel); set it to 0")
    seed_everything(cfg.seed)
    data = prepare_run_data(cfg, run, info, resume, init_from)
    tokenizer = data.tokenizer
    start_run(run, cfg, tokenizer, info, device, resume, init_from)
    raw_model = build_model(cfg.model, tokenizer.vocab_size, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                            eos_id=tokenizer.eos_id).to(device)
    limit = raw_model.max_length  # Transformer: source and BOS + target positions; RNN: None
    train_pairs, val_pairs = (fit_lengths(data.splits[side].pairs, limit) for side in ("train", "val"))
    if info.is_main:
        report_pairs(run, data, train_pairs)
    t = cfg.train
    batcher = PairBatcher(train_pairs, t.batch_size, t.grad_accum, cfg.seed, info.rank, info.world_size)
    tr = build_trainable(cfg, run, info, device, raw_model, resume, "batcher", batcher, init_from)
    return Seq2SeqSetup(cfg, run, info, device, resolve_precision(t.precision, device), tokenizer, train_pairs,
                        val_pairs, data.splits["val"].texts, raw_model, tr.model, tr.optimizer, tr.scheduler,
                        batcher, tr.tracker, tr.start_step, resume)


def fit_lengths(pairs: list[Pair] | None, limit: int | None) -> list[Pair]:
    """Keep sources' last `limit` tokens and targets' first `limit - 1` (room for BOS/EOS)."""
    if not pairs:
        raise SeqlabError("the pairs corpus has an empty split; use a bigger corpus")
    if limit is None:
        return pairs
    return [(s[-limit:], t[:limit - 1]) for s, t in pairs]


def report_pairs(run: RunDir, data: PreparedData, train_pairs: list[Pair]) -> None:
    """Say on stderr what data.max_source_len / max_target_len cut (a warning above 1%), and record the longest
    training target in run.json: an unset decode.max_new_tokens is set from it (seqlab.decode.reply_length)."""
    for kind, line in data.truncation.messages() if data.truncation is not None else []:
        if kind != "none":
            print(f"warning: {line}" if kind == "warning" else line, file=sys.stderr)
    if run.info.is_file():
        info = json.loads(run.info.read_text(encoding="utf-8"))
        write_json(run.info, info | {"longest_target": max(len(t) for _, t in train_pairs)})


def teacher_forcing(scheduled_sampling: float, step: int) -> float:
    """The probability of feeding the reference token at optimizer step `step` (1 = plain teacher forcing)."""
    return max(0.0, 1.0 - scheduled_sampling * step)


def fit(s: Seq2SeqSetup) -> dict[str, Any]:
    """The shared training loop (seqlab.train.loop) over length-bucketed batches of pairs."""
    tok = s.tokenizer

    def next_batches() -> tuple[list[Batch], torch.Tensor]:
        batches = [_to(s, collate_pairs([s.train_pairs[i] for i in idx], tok.pad_id, tok.bos_id, tok.eos_id))
                   for idx in s.batcher.next_indices()]
        return batches, sum((b[3] != IGNORE_INDEX).sum() for b in batches)  # target tokens, EOS included

    return run_loop(s, RecipeHooks(next_batches, lambda step: _loss_fn(s.cfg, step),
                                   lambda step, metrics, bar: evaluate_and_checkpoint(s, step, metrics, bar),
                                   lambda: _extras(s),
                                   lambda step: {"teacher_forcing": teacher_forcing(s.cfg.train.scheduled_sampling,
                                                                                    step)}))


def _to(s: Seq2SeqSetup, batch: Batch) -> Batch:
    return tuple(x.to(s.device, non_blocking=True) for x in batch)  # type: ignore[return-value]


def _loss_fn(cfg: Config, step: int):
    """The micro-batch loss at optimizer step `step` (the RNN decoder gets its teacher-forcing probability)."""
    extra = {}
    if cfg.train.scheduled_sampling > 0:
        extra["teacher_forcing"] = teacher_forcing(cfg.train.scheduled_sampling, step)

    def loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        src, src_mask, tgt_in, targets = batch
        return model(src, src_mask, tgt_in, targets, **extra)[1]

    return loss


def evaluate_and_checkpoint(s: Seq2SeqSetup, step: int, metrics: MetricsWriter, bar: TrainProgress) -> float:
    """Validate, keep the best weights, print samples, save the checkpoint; returns the val loss."""
    t = s.cfg.train
    val = validate(s.raw_model, s.val_pairs, s.tokenizer, t.batch_size, t.eval_batches, s.info, s.device, s.precision)
    improved = s.tracker.update(step, val)
    ppl = math.exp(min(val, 700.0))
    metrics.write({"step": step, "val_loss": val, "val_ppl": ppl, "best_val_loss": s.tracker.best})
    if s.info.is_main:
        if improved:
            save_weights(s.raw_model, s.run.best, metadata={"step": str(step)})
        bar.print(f"step {step}: val loss {val:.4f} (ppl {ppl:.2f})"
                  f"{' (best)' if improved else f', best {s.tracker.best:.4f} at step {s.tracker.best_step}'}")
        for line in samples(s):
            bar.print("  | " + line)
    save_checkpoint(s.run, step, s.raw_model, s.optimizer, s.scheduler, _extras(s), s.info, s.device)
    return val


def _extras(s: Seq2SeqSetup) -> dict[str, Any]:
    return {"batcher": s.batcher.state_dict(), "tracker": s.tracker.state_dict()}


@torch.no_grad()
def validate(model: torch.nn.Module, pairs: list[Pair], tokenizer: Tokenizer, batch_size: int,
             eval_batches_limit: int | None, info: DistInfo, device: torch.device, precision: str) -> float:
    """Mean NLL per target token (EOS included) over the val pairs; each rank scores every world_size-th batch."""
    batches = eval_batches(pairs, batch_size)[:eval_batches_limit]
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # (nll sum, tokens)
    was_training = model.training
    model.eval()
    try:
        for idx in batches[info.rank::info.world_size]:
            src, src_mask, tgt_in, targets = (x.to(device) for x in collate_pairs(
                [pairs[i] for i in idx], tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id))
            with autocast(device, precision):
                logits = model(src, src_mask, tgt_in)
            nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                  reduction="sum")
            totals += torch.stack([nll.double(), (targets != IGNORE_INDEX).sum().double()])
    finally:
        model.train(was_training)
    totals = all_reduce_sum(totals, info)
    return (totals[0] / totals[1]).item()


def samples(s: Seq2SeqSetup) -> list[str]:
    """Greedy replies to the first `train.samples` val sources: 'source -> reply (reference)'."""
    from seqlab.decode import generate
    from seqlab.decode.options import run_token_options
    from seqlab.decode.reply_length import run_max_new_tokens

    n = min(s.cfg.train.samples, len(s.val_pairs))
    if n == 0:
        return []
    tok = s.tokenizer
    src, src_mask, _, _ = collate_pairs(s.val_pairs[:n], tok.pad_id, tok.bos_id, tok.eos_id)
    limit = min(run_max_new_tokens(s.cfg, s.run.path), (s.raw_model.max_length or 10**9) - 1)
    s.raw_model.eval()
    try:
        with autocast(s.device, s.precision):
            out = generate(s.raw_model, src.to(s.device), attention_mask=src_mask.to(s.device), max_new_tokens=limit,
                           do_sample=False, num_beams=1, **run_token_options(tok, s.cfg.decode.suppress_unk))
    finally:
        s.raw_model.train()
    # the pairs' own text where the data kept it: decoding the ids would show <unk> for unseen words
    texts = s.val_texts[:n] if s.val_texts else [(tok.decode(a), tok.decode(b)) for a, b in s.val_pairs[:n]]
    return [f"{source} -> {tok.decode(row.tolist())} ({target})"
            for (source, target), row in zip(texts, out.sequences.cpu(), strict=True)]
