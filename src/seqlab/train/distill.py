"""Knowledge distillation: a run's model (the student) learns from a frozen teacher run (`config.distill`).

Word-level KD (Hinton et al. 2015). For each real target token, with the student's logits z_s and the
teacher's z_t (both (V,)), the data's token y and the temperature T:

    p_t = softmax(z_t / T)        p_s = softmax(z_s / T)        KL(p_t || p_s) = sum_v p_t,v (log p_t,v - log p_s,v)
    L_tok = alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(z_s, y)
    L = (1/N) sum of L_tok over the N real target tokens          (padding, IGNORE_INDEX, is masked)

The T^2 keeps the soft term's gradients the size of the hard term's as T changes (they scale as 1/T^2).
The teacher is frozen (eval mode, no gradients) and sees the same batch: an LM the same windows, a seq2seq
model the same sources with teacher forcing over the same target tokens.

Sequence-level KD (Kim & Rush 2016): the teacher's decoded outputs replace the training targets and the
student is trained on them with the plain cross-entropy (alpha and T are unused). Decoding is
`seqlab.decode.generate`: beam search of width `distill.num_beams` (1 = greedy), or with
`distill.decoding: sample` ancestral sampling at temperature 1 (seeded), an unbiased draw from the teacher's
sequence distribution. `auto` (the default) is beam search for seq2seq, as Kim & Rush, and sampling for LMs:
an LM's beam output is the generic, repetitive mode of open-ended text ("the world, the world"), and a student
trained on it ends further from the teacher than one trained on the data (measured, docs/compress.md).
  seq2seq  each training source's target becomes the teacher's output for it;
  LM       the train stream is cut into pieces of context_length tokens; each keeps its first
           `distill.prefix_length` tokens of real text and the teacher continues it to the piece's length
           (EOS and <unk> suppressed); the pieces, joined, are the new train stream, the same length as the
           old (a tail shorter than a piece stays real text), from which training windows are drawn as usual.
The generated corpus is cached in RUN/distill_corpus.json (an atomic write), keyed by the teacher's weights
and the settings, so `--resume` reads it instead of decoding again. Validation always uses the real val split.

The student uses the teacher's tokenizer; a config whose data section would need another vocabulary is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.config import Config, DataConfig, DistillConfig
from seqlab.data.tokenizers import Tokenizer
from seqlab.decode.generate import generate
from seqlab.decode.options import run_token_options
from seqlab.decode.reply_length import run_max_new_tokens
from seqlab.errors import SeqlabError
from seqlab.io import read_json, sha256_file, write_json
from seqlab.models.loading import load_model_from_run
from seqlab.runs import RunDir, open_run
from seqlab.train.distributed import DistInfo, barrier
from seqlab.train.pair_batches import IGNORE_INDEX, Pair, collate_pairs
from seqlab.train.state import has_checkpoint

CORPUS_FILE = "distill_corpus.json"
VOCABULARY_KEYS = ("task", "tokenizer", "lang", "vocab_size", "max_vocab", "min_freq")  # what decides the tokens
GENERATE_BATCH = 64  # sources (or LM pieces) the teacher decodes at once


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      alpha: float, temperature: float, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(z_s, y), the mean over the real
    target tokens; logits (B, T, V), targets (B, T) with `ignore_index` at padding."""
    real = targets != ignore_index  # (B, T)
    student = student_logits[real].float()  # (N, V)
    loss = student.new_zeros(())
    if alpha > 0:
        log_p_s = F.log_softmax(student / temperature, dim=-1)  # (N, V)
        log_p_t = F.log_softmax(teacher_logits[real].float() / temperature, dim=-1)  # (N, V)
        kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")  # mean over the N tokens
        loss = loss + alpha * temperature ** 2 * kl
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student, targets[real])
    return loss


def lm_word_loss(teacher: torch.nn.Module, settings: DistillConfig):
    """The word-level KD loss of an LM micro-batch (inputs, targets), each (B, T)."""

    def loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch  # (B, T), (B, T)
        logits = model(inputs)  # (B, T, V)
        with torch.no_grad():
            teacher_logits = teacher(inputs) if settings.alpha > 0 else logits.detach()  # (B, T, V)
        return distillation_loss(logits, teacher_logits, targets, settings.alpha, settings.temperature)

    return loss


def seq2seq_word_loss(teacher: torch.nn.Module, settings: DistillConfig, extra: dict[str, Any]):
    """The word-level KD loss of a seq2seq micro-batch (src, src_mask, tgt_in, targets); `extra` goes to the
    student only (scheduled sampling): the teacher is always teacher-forced over the targets."""

    def loss(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        src, src_mask, tgt_in, targets = batch  # (B, S), (B, S), (B, T), (B, T)
        logits = model(src, src_mask, tgt_in, **extra)  # (B, T, V)
        with torch.no_grad():
            teacher_logits = teacher(src, src_mask, tgt_in) if settings.alpha > 0 else logits.detach()
        return distillation_loss(logits, teacher_logits, targets, settings.alpha, settings.temperature)

    return loss


# ----------------------------------------------------------------------------- the teacher


def check_vocabulary(student_data: DataConfig, teacher_data: DataConfig, teacher: str | Path) -> None:
    """The student's data section may not ask for another vocabulary than the teacher's (it uses its tokenizer)."""
    differ = [k for k in VOCABULARY_KEYS if getattr(student_data, k) != getattr(teacher_data, k)]
    if differ:
        shown = "; ".join(f"data.{k} {getattr(student_data, k)!r} here, {getattr(teacher_data, k)!r} in the "
                          f"teacher" for k in differ)
        raise SeqlabError(f"vocabulary mismatch with the teacher {str(teacher)!r} ({shown}): a distilled student "
                          f"uses its teacher's tokenizer; drop the --set data.{differ[0]} (or set it as the teacher's)")


def check_tokens(student: Tokenizer, teacher: Tokenizer, where: str | Path) -> None:
    """Both tokenizers map the same ids to the same tokens, else a vocabulary mismatch."""
    if student.vocab_size != teacher.vocab_size:
        raise SeqlabError(f"vocabulary mismatch: the teacher {str(where)!r} has {teacher.vocab_size:,} tokens, this "
                          f"run {student.vocab_size:,}; distil from a teacher with the run's tokenizer")
    for i in range(student.vocab_size):
        if student.id_to_token(i) != teacher.id_to_token(i):
            raise SeqlabError(f"vocabulary mismatch: token {i} is {student.id_to_token(i)!r} in this run and "
                              f"{teacher.id_to_token(i)!r} in the teacher {str(where)!r}; distil from a teacher "
                              "with the run's tokenizer")


def absolute_teacher(cfg: Config) -> Config:
    """`cfg` with distill.teacher as an absolute path, so that the run's config.yaml reads the same from any
    directory (`seqlab train --resume` from elsewhere)."""
    if cfg.distill.teacher is None:
        return cfg
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill,
                                                                teacher=str(Path(cfg.distill.teacher).resolve())))


def teacher_weights(teacher: str | Path) -> Path:
    """The weights a teacher run teaches with: its best, else its last; a one-line error when it has none."""
    run = open_run(teacher)
    weights = run.best if run.best.is_file() else run.model
    if not weights.is_file() or not run.tokenizer.is_file():
        raise SeqlabError(f"the teacher {str(teacher)!r} has no trained weights or no tokenizer.json; give a run "
                          "written by `seqlab train` that reached its first evaluation")
    return weights


@dataclass
class Teacher:
    model: torch.nn.Module  # frozen, in eval mode, on the training device
    config: Config  # the teacher run's


def load_teacher(cfg: Config, run: RunDir, tokenizer: Tokenizer, info: DistInfo, device: torch.device,
                 resume: bool) -> Teacher | None:
    """The frozen teacher of `cfg.distill` on `device` (None when the run is not distilled).

    A new run records the teacher's weights and their sha256 in run.json; a resumed run refuses a teacher
    whose weights changed since. The global RNG is left as it was (the student's init does not depend on it)."""
    settings = cfg.distill
    if settings.teacher is None:
        return None
    weights = teacher_weights(settings.teacher)
    digest = sha256_file(weights)
    continuing = resume and has_checkpoint(run)
    recorded = (read_json(run.info).get("distill", {}) if run.info.is_file() else {}).get("weights_sha256")
    if continuing and recorded is not None and recorded != digest:
        raise SeqlabError(f"the teacher's weights {weights} changed since {run.path} started (sha256 "
                          f"{recorded[:12]}... then, {digest[:12]}... now); a distilled run resumes with the teacher "
                          "it started with: restore them, or distil a new run")
    with torch.random.fork_rng(devices=[]):
        teacher, teacher_tokenizer, teacher_cfg = load_model_from_run(settings.teacher, device)
    check_tokens(tokenizer, teacher_tokenizer, settings.teacher)
    check_student(cfg, teacher_cfg, settings.teacher)
    teacher.requires_grad_(False)
    if info.is_main and not continuing and run.info.is_file():
        record = {"teacher": str(Path(settings.teacher).resolve()), "weights": str(weights.resolve()),
                  "weights_sha256": digest}
        write_json(run.info, read_json(run.info) | {"distill": record})
    return Teacher(teacher, teacher_cfg)


def check_student(cfg: Config, teacher_cfg: Config, teacher: str | Path) -> None:
    """The student is the same kind of model as the teacher (LM or seq2seq), on data of its vocabulary."""
    student_seq2seq, teacher_seq2seq = (c.model.arch.startswith("seq2seq") for c in (cfg, teacher_cfg))
    if student_seq2seq != teacher_seq2seq:
        kind = "seq2seq_rnn or seq2seq_transformer" if teacher_seq2seq else "rnn_lm or transformer_lm"
        raise SeqlabError(f"the teacher {str(teacher)!r} is a {teacher_cfg.model.arch} model and the student a "
                          f"{cfg.model.arch}: distil into the same kind of model ({kind})")
    check_vocabulary(cfg.data, teacher_cfg.data, teacher)
    check_lm_context(cfg, teacher_cfg)


def check_lm_context(cfg: Config, teacher_cfg: Config) -> None:
    """An LM teacher must see the student's whole window (word KD) or write one (sequence KD); a sequence-KD
    prefix must leave the teacher room to write."""
    if cfg.model.arch.startswith("seq2seq"):
        return
    settings, context_length = cfg.distill, cfg.model.context_length
    if teacher_cfg.model.arch == "transformer_lm" and teacher_cfg.model.context_length < context_length:
        raise SeqlabError(f"the student's model.context_length ({context_length}) is longer than the teacher's "
                          f"({teacher_cfg.model.context_length}); set --set "
                          f"model.context_length={teacher_cfg.model.context_length}")
    if settings.kind == "sequence" and settings.prefix_length >= context_length:
        raise SeqlabError(f"distill.prefix_length ({settings.prefix_length}) must be shorter than the student's "
                          f"model.context_length ({context_length}): the teacher writes the rest of each window")


# ----------------------------------------------------------------------------- sequence-level KD


def cached_corpus(run: RunDir, key: dict[str, Any], info: DistInfo, make) -> Any:
    """The corpus RUN/distill_corpus.json holds for `key`, else `make()`'s, written there first (rank 0; the
    other ranks wait and read it)."""
    path = run.path / CORPUS_FILE
    if not info.is_main:
        barrier(info)
    corpus = _read_cache(path, key)
    if corpus is None and info.is_main:
        why = "the cache holds other settings' corpus" if path.is_file() else "nothing cached yet"
        _say(f"sequence-level KD: the teacher decodes the training data ({why}) ...")
        started = time.perf_counter()
        corpus = make()
        write_json(path, {"key": key, "corpus": corpus}, indent=None)
        _say(f"sequence-level KD: decoded in {time.perf_counter() - started:.1f} s, cached in {path}")
    if info.is_main:
        barrier(info)
    return corpus if corpus is not None else _read_cache(path, key)


def _read_cache(path: Path, key: dict[str, Any]) -> Any:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stored.get("corpus") if isinstance(stored, dict) and stored.get("key") == key else None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def corpus_key(cfg: Config, **extra: Any) -> dict[str, Any]:
    """What a cached teacher corpus depends on: the teacher's weights, the KD settings and the training data."""
    settings = cfg.distill
    return {"teacher_sha256": sha256_file(teacher_weights(settings.teacher)), "search": teacher_search(cfg), **extra}


def teacher_search(cfg: Config) -> dict[str, Any]:
    """The `generate` options the teacher writes the sequence-KD corpus with (see the module docstring)."""
    settings = cfg.distill
    decoding = settings.decoding
    if decoding == "auto":
        decoding = "beam" if cfg.model.arch.startswith("seq2seq") else "sample"
    if decoding == "sample":
        return {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": cfg.seed}
    return {"do_sample": False, "num_beams": settings.num_beams}


def _batch_search(search: dict[str, Any], start: int) -> dict[str, Any]:
    """A batch's options: sampling gets its own seed per batch (the run's seed + the batch's first row)."""
    return search | {"seed": search["seed"] + start} if "seed" in search else search


def batch_starts(n: int, what: str) -> Iterator[int]:
    """0, GENERATE_BATCH, 2 GENERATE_BATCH... < n, saying on stderr how far the decoding is at every tenth."""
    started, shown = time.perf_counter(), 0
    for start in range(0, n, GENERATE_BATCH):
        if start * 10 // n > shown:
            shown = start * 10 // n
            _say(f"sequence-level KD: {start:,} of {n:,} {what} decoded ({time.perf_counter() - started:.0f} s)")
        yield start


def lm_teacher_stream(teacher: torch.nn.Module, ids: torch.Tensor, context_length: int, prefix_length: int,
                      search: dict[str, Any], tokenizer: Tokenizer, device: torch.device) -> torch.Tensor:
    """The train stream `ids` (N,) rewritten by the teacher piece by piece (see the module docstring)."""
    window = context_length  # as many tokens as the teacher sees at once
    n = ids.numel() // window
    prompts = ids[:n * window].view(n, window)[:, :prefix_length]  # (n, P)
    new_tokens = window - prefix_length
    options = run_token_options(tokenizer)
    rows = []
    for start in batch_starts(n, "training-text pieces"):
        out = generate(teacher, prompts[start:start + GENERATE_BATCH].to(device), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, **_batch_search(search, start), **options)
        rows.append(out.sequences.cpu())  # (b, window): the prefix, then the teacher's tokens
    return torch.cat([*(r.flatten() for r in rows), ids[n * window:]])  # (N,)


def seq2seq_teacher_targets(teacher: torch.nn.Module, pairs: list[Pair], max_new_tokens: int,
                            search: dict[str, Any], tokenizer: Tokenizer, device: torch.device) -> list[list[int]]:
    """The teacher's output for each pair's source, without BOS and EOS (the new targets)."""
    options = run_token_options(tokenizer)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))  # similar lengths share a batch
    targets: list[list[int]] = [[] for _ in pairs]
    for start in batch_starts(len(order), "training sources"):
        chunk = order[start:start + GENERATE_BATCH]
        src, src_mask, _, _ = collate_pairs([pairs[i] for i in chunk], tokenizer.pad_id, tokenizer.bos_id,
                                            tokenizer.eos_id)  # (b, S), (b, S)
        out = generate(teacher, src.to(device), attention_mask=src_mask.to(device), max_new_tokens=max_new_tokens,
                       **_batch_search(search, start), **options)
        for i, row in zip(chunk, out.sequences[:, 1:].tolist(), strict=True):  # drop the decoder's BOS
            targets[i] = row[:row.index(tokenizer.eos_id)] if tokenizer.eos_id in row else row
    return targets


def distilled_lm_stream(cfg: Config, run: RunDir, teacher: torch.nn.Module, ids: torch.Tensor,
                        tokenizer: Tokenizer, info: DistInfo, device: torch.device) -> torch.Tensor:
    """The LM train stream sequence-level KD trains on, from RUN's cache or decoded now."""
    settings, context_length = cfg.distill, cfg.model.context_length
    key = corpus_key(cfg, task="lm", context_length=context_length, prefix_length=settings.prefix_length,
                     train_tokens=ids.numel(), train_sha256=_digest(ids.tolist()))
    stream = cached_corpus(run, key, info, lambda: lm_teacher_stream(
        teacher, ids, context_length, settings.prefix_length, teacher_search(cfg), tokenizer, device).tolist())
    return torch.tensor(stream, dtype=torch.long)


def distilled_pairs(cfg: Config, run: RunDir, teacher: torch.nn.Module, teacher_cfg: Config, pairs: list[Pair],
                    limit: int | None, tokenizer: Tokenizer, info: DistInfo, device: torch.device) -> list[Pair]:
    """The train pairs with the teacher's outputs as targets (cut to the student's `limit`), cached in RUN."""
    teacher_limit = getattr(teacher, "max_length", None)
    caps = [run_max_new_tokens(teacher_cfg, cfg.distill.teacher)]
    caps += [n - 1 for n in (limit, teacher_limit) if n is not None]
    max_new_tokens = min(caps)
    key = corpus_key(cfg, task="pairs", max_new_tokens=max_new_tokens, pairs=len(pairs),
                     train_sha256=_digest(pairs))
    targets = cached_corpus(run, key, info, lambda: seq2seq_teacher_targets(
        teacher, pairs, max_new_tokens, teacher_search(cfg), tokenizer, device))
    return [(source, target) for (source, _), target in zip(pairs, targets, strict=True)]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def fit_teacher_lengths(pairs: list[Pair], teacher: torch.nn.Module | None) -> list[Pair]:
    """Pairs cut further to a word-KD teacher's positions (a Transformer teacher of a shorter context)."""
    limit = None if teacher is None else getattr(teacher, "max_length", None)
    if limit is None:
        return pairs
    return [(source[-limit:], target[:limit - 1]) for source, target in pairs]


# ----------------------------------------------------------------------------- how close the student came


@torch.no_grad()
def lm_teacher_kl(student: torch.nn.Module, teacher: torch.nn.Module, ids: torch.Tensor, context_length: int,
                  batch_size: int = 16, device: str | torch.device = "cpu") -> float:
    """Mean KL(p_teacher || p_student) in nats per token (T = 1) over the stream `ids` (N,), in non-overlapping
    windows of `context_length` tokens (a tail shorter than a window is left out): how far the student's
    next-token distributions are from the teacher's, e.g. on the val split."""
    n = (ids.numel() - 1) // context_length
    windows = ids[:n * context_length].view(n, context_length)  # (n, T)
    total = 0.0
    for start in range(0, n, batch_size):
        x = windows[start:start + batch_size].to(device)  # (b, T)
        log_p_s = F.log_softmax(student(x).float(), dim=-1).flatten(0, 1)  # (b T, V)
        log_p_t = F.log_softmax(teacher(x).float(), dim=-1).flatten(0, 1)  # (b T, V)
        total += F.kl_div(log_p_s, log_p_t, log_target=True, reduction="sum").item()
    return total / max(1, n * context_length)
