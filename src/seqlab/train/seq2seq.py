"""The seq2seq recipe (task "pairs"): `build_setup` builds everything from a Config, `fit` trains,
`validate` measures.

    decoder input  = <bos> y_1 .. y_n          targets = y_1 .. y_n <eos>
    L(theta) = -(1/N) sum over real target tokens of log p_theta(y_t | y_<t, x)     (pads: IGNORE_INDEX)
    val loss = the same over the whole val split (or `train.eval_batches` batches); ppl = exp(val loss)

Batches are bucketed by length (`pair_batches.py`). With `train.scheduled_sampling = k` (seq2seq_rnn only)
the teacher-forcing probability at step s is max(0, 1 - k s) (Bengio et al. 2015, linear decay).
Optimizer, schedule, checkpoints, exact resume, metrics, progress and DDP are the LM recipe's pieces.
With `distill.teacher` set the model is a distilled student (seqlab.train.distill).
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
from seqlab.train import distill
from seqlab.train.distributed import (
    DistInfo,
    all_reduce_sum,
    setup_distributed,
    teardown_distributed,
)
from seqlab.train.loop import RecipeHooks, run_loop
from seqlab.train.metrics import MetricsWriter
from seqlab.train.pair_batches import IGNORE_INDEX, Batch, Pair, PairBatcher, collate_pairs, eval_batches
from seqlab.train.progress import TrainProgress
from seqlab.train.state import save_checkpoint
from seqlab.train.step import autocast
from seqlab.train.trainable import RecipeSetup, build_recipe_setup, prepare_run_data, start_run


@dataclass
class Seq2SeqSetup(RecipeSetup):
    """Everything `fit` needs: the shared set-up, the pairs (cut to the model's positions) and their batcher."""

    train_pairs: list[Pair]
    val_pairs: list[Pair]
    val_texts: list[tuple[str, str]] | None  # the val pairs' own text (source, target), shown with the samples
    batcher: PairBatcher
    teacher: torch.nn.Module | None = None  # word-level KD's frozen teacher (seqlab.train.distill)


def train_seq2seq(cfg: Config, run_dir: str | Path, device_name: str = "auto", resume: bool = False,
                  init_from: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) a seq2seq model into `run_dir`; returns the run summary (rank 0's view)."""
    info, device = setup_distributed(device_name)
    try:
        return fit(build_setup(cfg, RunDir(Path(run_dir)), info, device, resume,
                         None if init_from is None else Path(init_from)))
    finally:
        teardown_distributed()


def build_setup(cfg: Config, run: RunDir, info: DistInfo, device: torch.device, resume: bool,
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
    teacher = distill.load_teacher(cfg, run, tokenizer, info, device, resume)
    if teacher is not None:
        train_pairs = distill.fit_teacher_lengths(train_pairs, teacher.model)  # a teacher of fewer positions
        if cfg.distill.kind == "sequence":  # the teacher's replies replace the targets; it is done teaching
            train_pairs = distill.distilled_pairs(cfg, run, teacher.model, teacher.config, train_pairs, limit,
                                                  tokenizer, info, device)
            teacher = None
    if info.is_main:
        report_pairs(run, data, train_pairs)
    batcher = PairBatcher(train_pairs, cfg.train.batch_size, cfg.train.grad_accum, cfg.seed, info.rank,
                          info.world_size)
    common = build_recipe_setup(cfg, run, info, device, tokenizer, raw_model, resume, "batcher", batcher,
                                init_from)
    return Seq2SeqSetup(**vars(common), train_pairs=train_pairs, val_pairs=val_pairs,
                        val_texts=data.splits["val"].texts, batcher=batcher,
                        teacher=None if teacher is None else teacher.model)


def fit_lengths(pairs: list[Pair] | None, limit: int | None) -> list[Pair]:
    """Keep sources' last `limit` tokens and targets' first `limit - 1` (room for BOS/EOS)."""
    if not pairs:
        raise SeqlabError("the pairs corpus has an empty split; use a bigger corpus")
    if limit is None:
        return pairs
    return [(source[-limit:], target[:limit - 1]) for source, target in pairs]


def report_pairs(run: RunDir, data: PreparedData, train_pairs: list[Pair]) -> None:
    """Say on stderr what data.max_source_len / max_target_len cut (a warning above 1%), and record the longest
    training target in run.json: an unset decode.max_new_tokens is set from it (seqlab.decode.reply_length)."""
    for kind, line in data.truncation.messages() if data.truncation is not None else []:
        if kind != "none":
            print(f"warning: {line}" if kind == "warning" else line, file=sys.stderr)
    if run.info.is_file():
        info = json.loads(run.info.read_text(encoding="utf-8"))
        write_json(run.info, info | {"longest_target": max(len(target) for _, target in train_pairs)})


def teacher_forcing(scheduled_sampling: float, step: int) -> float:
    """The probability of feeding the reference token at optimizer step `step` (1 = plain teacher forcing)."""
    return max(0.0, 1.0 - scheduled_sampling * step)


def fit(setup: Seq2SeqSetup) -> dict[str, Any]:
    """The shared training loop (seqlab.train.loop) over length-bucketed batches of pairs."""
    tok = setup.tokenizer

    def next_batches() -> tuple[list[Batch], torch.Tensor]:
        batches = [_to_device(setup, collate_pairs([setup.train_pairs[i] for i in idx], tok.pad_id, tok.bos_id,
                                                   tok.eos_id))
                   for idx in setup.batcher.next_indices()]
        return batches, sum((b[3] != IGNORE_INDEX).sum() for b in batches)  # target tokens, EOS included

    def evaluate(step: int, metrics: MetricsWriter, bar: TrainProgress) -> float:
        return evaluate_and_checkpoint(setup, step, metrics, bar)

    def log_fields(step: int) -> dict[str, Any]:
        return {"teacher_forcing": teacher_forcing(setup.cfg.train.scheduled_sampling, step)}

    return run_loop(setup, RecipeHooks(next_batches, lambda step: _loss_fn(setup.cfg, step, setup.teacher),
                                       evaluate, lambda: _extras(setup), log_fields))


def _to_device(setup: Seq2SeqSetup, batch: Batch) -> Batch:
    return tuple(x.to(setup.device, non_blocking=True) for x in batch)  # type: ignore[return-value]


def _loss_fn(cfg: Config, step: int, teacher: torch.nn.Module | None = None):
    """The micro-batch loss at optimizer step `step` (the RNN decoder gets its teacher-forcing probability;
    with a `teacher`, word-level KD's loss)."""
    extra = {}
    if cfg.train.scheduled_sampling > 0:
        extra["teacher_forcing"] = teacher_forcing(cfg.train.scheduled_sampling, step)
    if teacher is not None:
        return distill.seq2seq_word_loss(teacher, cfg.distill, extra)

    def loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        src, src_mask, tgt_in, targets = batch
        return model(src, src_mask, tgt_in, targets, **extra)[1]

    return loss


def evaluate_and_checkpoint(setup: Seq2SeqSetup, step: int, metrics: MetricsWriter, bar: TrainProgress) -> float:
    """Validate, keep the best weights, print samples, save the checkpoint; returns the val loss."""
    train_cfg = setup.cfg.train
    val = validate(setup.raw_model, setup.val_pairs, setup.tokenizer, train_cfg.batch_size, train_cfg.eval_batches,
                   setup.info, setup.device, setup.precision)
    tracker = setup.tracker
    improved = tracker.update(step, val)
    ppl = math.exp(min(val, 700.0))
    metrics.write({"step": step, "val_loss": val, "val_ppl": ppl, "best_val_loss": tracker.best})
    if setup.info.is_main:
        if improved:
            save_weights(setup.raw_model, setup.run.best, metadata={"step": str(step)})
        bar.print(f"step {step}: val loss {val:.4f} (ppl {ppl:.2f})"
                  f"{' (best)' if improved else f', best {tracker.best:.4f} at step {tracker.best_step}'}")
        for line in samples(setup):
            bar.print("  | " + line)
    save_checkpoint(setup.run, step, setup.raw_model, setup.optimizer, setup.scheduler, _extras(setup), setup.info,
                    setup.device)
    return val


def _extras(setup: Seq2SeqSetup) -> dict[str, Any]:
    return {"batcher": setup.batcher.state_dict(), "tracker": setup.tracker.state_dict()}


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


def samples(setup: Seq2SeqSetup) -> list[str]:
    """Greedy replies to the first `train.samples` val sources: 'source -> reply (reference)'."""
    from seqlab.decode import generate
    from seqlab.decode.options import run_token_options
    from seqlab.decode.reply_length import run_max_new_tokens

    n = min(setup.cfg.train.samples, len(setup.val_pairs))
    if n == 0:
        return []
    tok = setup.tokenizer
    src, src_mask, _, _ = collate_pairs(setup.val_pairs[:n], tok.pad_id, tok.bos_id, tok.eos_id)
    limit = min(run_max_new_tokens(setup.cfg, setup.run.path), (setup.raw_model.max_length or 10**9) - 1)
    setup.raw_model.eval()
    try:
        with autocast(setup.device, setup.precision):
            out = generate(setup.raw_model, src.to(setup.device), attention_mask=src_mask.to(setup.device),
                           max_new_tokens=limit, do_sample=False, num_beams=1,
                           **run_token_options(tok, setup.cfg.decode.suppress_unk))
    finally:
        setup.raw_model.train()
    # the pairs' own text where the data kept it: decoding the ids would show <unk> for unseen words
    texts = (setup.val_texts[:n] if setup.val_texts else
             [(tok.decode(source), tok.decode(target)) for source, target in setup.val_pairs[:n]])
    return [f"{source} -> {tok.decode(row.tolist())} ({target})"
            for (source, target), row in zip(texts, out.sequences.cpu(), strict=True)]
