"""SeqGAN on a real corpus: one text per sequence (e.g. a Tang poem), MLE vs SeqGAN by BLEU-2..5 and self-BLEU.

Each text (a document, an example, or a line of a .txt file) becomes `<bos>`-started tokens + `<eos>`, padded with `<pad>` to `max_len` tokens (a text
that does not fit is an error unless `longer` is `truncate` or `drop`). G is pre-trained by MLE,
D pre-trained, then adversarial rounds run by the oracle protocol's loop (seqlab.train.adversarial).
Generated texts end at their first `<eos>`; they are scored against the held-out texts with
BLEU-n = mean sentence BLEU against the whole held-out pool (`seqlab.eval.bleu.pooled_bleu`) and
with self-BLEU (`seqlab.eval.self_bleu`).

    RUN/config.json  tokenizer.json  mle_generator.safetensors  generator.safetensors  state.*  report.json
    RUN/lm/          the SeqGAN generator (LSTM) as a seqlab rnn_lm run: `seqlab generate RUN/lm`

Running the same command again resumes from `state.*` (written at least every `checkpoint_every_s`
seconds and at the end of every phase) exactly: after a `kill -9` at any moment, the finished run's
weights and report equal an uninterrupted run's (its wall-clock timings aside). The first Ctrl-C or
SIGTERM saves a checkpoint at the end of the current epoch / iteration / round and stops
(`seqlab` exits 130 / 143).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from seqlab.checkpoint import load_weights, save_weights
from seqlab.errors import ConfigError, DataError, SeqlabError
from seqlab.io import atomic_path, read_json, write_json
from seqlab.models.discriminator import WIDTHS
from seqlab.models.seqgan_generator import LSTMGenerator, SequenceGenerator, build_generator
from seqlab.train.adversarial import AdversarialSchedule, AdversarialTrainer, SavePoints, new_discriminator
from seqlab.train.interrupt import InterruptFlag

LONGER = ("error", "truncate", "drop")
_SPEED_ONLY = ("checkpoint_every_s",)  # settings a resumed run may change


@dataclass(frozen=True)
class TextSeqganConfig:
    data: str
    max_len: int = 64
    longer: str = "error"  # a text longer than max_len - 1 tokens: error | truncate | drop
    tokenizer: str = "char"
    pretrain_epochs: int = 80
    d_pretrain_iters: int = 10
    adv_rounds: int = 50
    num_rollouts: int = 16
    rollout_rate: float = 0.0
    generator: str = "lstm"
    size: int = 64
    val_fraction: float = 0.1
    eval_samples: int = 200
    seed: int = 1337
    batch_size: int = 64
    g_lr: float = 0.01
    d_lr: float = 1e-4
    d_epochs: int = 3
    d_iters_per_round: int = 1
    grad_clip: float = 5.0
    checkpoint_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.num_rollouts < 1:
            raise ConfigError(f"the rollout count must be >= 1, got {self.num_rollouts}")
        if self.max_len < max(WIDTHS):
            raise ConfigError(f"--max-len must be >= {max(WIDTHS)} (the discriminator's widest filter), "
                              f"got {self.max_len}")
        if self.longer not in LONGER:
            raise ConfigError(f"unknown --longer {self.longer!r}; choose one of {', '.join(LONGER)}")
        if self.tokenizer not in ("char", "word"):
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r}; choose char or word")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("pretrain_epochs", "d_pretrain_iters", "adv_rounds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_samples < 2 or self.size < 1 or self.batch_size < 1:
            raise ConfigError("eval_samples must be >= 2, size and batch_size >= 1")
        if self.checkpoint_every_s < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0 seconds, got {self.checkpoint_every_s}")


def corpus_texts(corpus: Any) -> list[str]:
    """One text per sequence: each document (a poem), example or labelled text; a corpus that is one
    document (a .txt file) gives one text per non-empty line."""
    texts = corpus.texts()
    if corpus.kind == "text" and len(texts) == 1:
        texts = texts[0].splitlines()
    return [t.strip() for t in texts if t.strip()]


def encode_texts(texts: list[str], tokenizer: Any, max_len: int, longer: str) -> Tensor:
    """Texts -> [N, max_len] ids: tokens + <eos>, padded with <pad>; too-long texts per `longer`."""
    pad, eos = tokenizer.token_to_id("<pad>"), tokenizer.token_to_id("<eos>")
    rows = []
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text)
        if len(ids) + 1 > max_len:
            if longer == "error":
                raise DataError(f"text {i + 1} has {len(ids)} tokens (+ <eos>), longer than --max-len {max_len}; "
                                "raise --max-len, or pass --longer truncate|drop")
            if longer == "drop":
                continue
            ids = ids[: max_len - 1]
        rows.append(ids + [eos] + [pad] * (max_len - 1 - len(ids)))
    if not rows:
        raise DataError(f"no text fits in --max-len {max_len} tokens")
    return torch.tensor(rows, dtype=torch.long)


def decode_samples(seqs: Tensor, tokenizer: Any) -> list[str]:
    """Generated [N, T] ids -> texts, each cut at its first <eos>."""
    eos = tokenizer.token_to_id("<eos>")
    out = []
    for row in seqs.tolist():
        out.append(tokenizer.decode(row[: row.index(eos)] if eos in row else row, skip_special=True))
    return out


def train_text_seqgan(cfg: TextSeqganConfig, out: Path, device: torch.device, show_progress: bool = False,
                      ) -> dict[str, Any]:
    """Train (or resume) MLE then SeqGAN on `cfg.data` in `out`; the evaluation report."""
    from seqlab.data.corpora import load_corpus
    from seqlab.data.tokenizers import load_tokenizer, train_tokenizer
    from seqlab.train.progress import RichReporter

    out = Path(out)
    _check_run_dir(out, cfg)
    if (out / "report.json").is_file():
        return read_json(out / "report.json")
    texts = corpus_texts(load_corpus(cfg.data))
    train_texts, val_texts = _split(texts, cfg.val_fraction, cfg.seed)
    if (out / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(out / "tokenizer.json")
    else:
        tokenizer = train_tokenizer(cfg.tokenizer, train_texts)
        tokenizer.save(out / "tokenizer.json")
    data = encode_texts(train_texts, tokenizer, cfg.max_len, cfg.longer).to(device)
    if data.shape[0] < cfg.batch_size:
        raise DataError(f"{cfg.data}: {data.shape[0]} training texts, fewer than one batch ({cfg.batch_size})")
    with RichReporter(enabled=show_progress) as reporter, InterruptFlag() as interrupt:
        trainer = _TextTrainer(cfg, out, device, data, tokenizer.vocab_size, tokenizer.token_to_id("<bos>"), reporter)
        trainer.train(interrupt)
    report = {"data": cfg.data, "train_texts": data.shape[0], "val_texts": len(val_texts),
              "vocab_size": tokenizer.vocab_size, "timings": trainer.state["timings"]}
    for name, file in (("mle", "mle_generator.safetensors"), ("seqgan", "generator.safetensors")):
        generator = trainer.new_generator()
        load_weights(generator, out / file)
        report[name] = evaluate_texts(generator, tokenizer, val_texts, cfg.eval_samples)
    if cfg.generator == "lstm":
        generator = trainer.new_generator()
        load_weights(generator, out / "generator.safetensors")
        export_lm_run(generator, tokenizer, cfg, out / "lm")
        report["lm_run"] = str(out / "lm")
    report["samples"] = report["seqgan"].pop("samples")[:10]
    report["mle_samples"] = report["mle"].pop("samples")[:10]
    write_json(out / "report.json", report)
    return report


def evaluate_texts(generator: SequenceGenerator, tokenizer: Any, references: list[str], n: int) -> dict[str, Any]:
    """BLEU-2..5 of n generated texts against the pool of references, self-BLEU, and the texts."""
    from seqlab.eval.bleu import pooled_bleu
    from seqlab.eval.self_bleu import self_bleu

    generator.eval()
    hyps = decode_samples(generator.sample(n).cpu(), tokenizer)
    cjk = any("\u4e00" <= ch <= "\u9fff" for t in references for ch in t)
    tokenize = "zh" if cjk else "13a"
    flat_refs = [r.replace("\n", " ") for r in references]
    flat_hyps = [h.replace("\n", " ") or "<empty>" for h in hyps]
    scores = {f"bleu{k}": pooled_bleu(flat_hyps, flat_refs, max_ngram_order=k, tokenize=tokenize) for k in range(2, 6)}
    scores["self_bleu"] = self_bleu(flat_hyps, tokenize=tokenize)
    scores["samples"] = hyps
    return scores


def export_lm_run(generator: LSTMGenerator, tokenizer: Any, cfg: TextSeqganConfig, out: Path) -> None:
    """Write the LSTM generator as a seqlab `rnn_lm` run (config.yaml, tokenizer.json, model.safetensors),
    so `seqlab generate OUT` samples it (an empty prompt starts from <bos>, as G does)."""
    from seqlab.config import Config, DataConfig, ModelConfig
    from seqlab.runs import RunDir

    run = RunDir(Path(out))
    run.write_config(Config(data=DataConfig(corpus=cfg.data, tokenizer=cfg.tokenizer),
                            model=ModelConfig(arch="rnn_lm", cell="lstm", n_layer=1, n_embd=cfg.size,
                                              hidden_size=cfg.size, tie_embeddings=False, dropout=0.0,
                                              context_length=cfg.max_len), seed=cfg.seed))
    tokenizer.save(run.tokenizer)
    weights = {"embedding.weight": generator.embedding.weight, "lm_head.weight": generator.out.weight,
               "lm_head.bias": generator.out.bias}
    weights |= {f"rnn.{k}": v for k, v in generator.lstm.state_dict().items()}
    with atomic_path(run.model) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp))
    run.write_info(cfg.seed, {"exported_from": "seqlab seqgan train"})


def sample_texts(run: Path, n: int, which: str, device: torch.device) -> list[str]:
    """n texts from a finished run's generator (`seqgan` or `mle`)."""
    from seqlab.data.tokenizers import load_tokenizer

    files = {"seqgan": "generator.safetensors", "mle": "mle_generator.safetensors"}
    if which not in files:
        raise ConfigError(f"unknown --model {which!r}; choose seqgan or mle")
    run = Path(run)
    if not (run / "config.json").is_file():
        raise SeqlabError(f"{str(run)!r} is not a `seqlab seqgan train` run directory (no config.json)")
    if not (run / files[which]).is_file():
        raise SeqlabError(f"{run} has no {which} generator yet (training has not reached it)")
    cfg = TextSeqganConfig(**read_json(run / "config.json"))
    tokenizer = load_tokenizer(run / "tokenizer.json")
    generator = _new_generator(cfg, tokenizer.vocab_size, tokenizer.token_to_id("<bos>")).to(device)
    load_weights(generator, run / files[which])
    generator.eval()
    return decode_samples(generator.sample(n).cpu(), tokenizer)


def _new_generator(cfg: TextSeqganConfig, vocab_size: int, bos: int) -> SequenceGenerator:
    sizes = {"emb_dim": cfg.size, "hidden_dim": cfg.size} if cfg.generator == "lstm" else {"n_embd": cfg.size}
    return build_generator(cfg.generator, vocab_size, cfg.max_len, start_token=bos, **sizes)


def _check_run_dir(out: Path, cfg: TextSeqganConfig) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a run directory")
    path = out / "config.json"
    if path.is_file():
        old, new = read_json(path), dataclasses.asdict(cfg)
        if {k: v for k, v in old.items() if k not in _SPEED_ONLY} != {k: v for k, v in new.items()
                                                                      if k not in _SPEED_ONLY}:
            raise ConfigError(f"{out} holds a run with different settings; use a new --out to start afresh")
    else:
        write_json(path, dataclasses.asdict(cfg))


def _split(texts: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded split of the distinct texts (a text never lands on both sides)."""
    distinct = sorted(set(texts))
    random.Random(seed).shuffle(distinct)
    n_val = max(1, round(len(distinct) * val_fraction))
    if len(distinct) - n_val < 1:
        raise DataError(f"too few distinct texts ({len(distinct)}) to hold {n_val} out")
    return distinct[n_val:], distinct[:n_val]


class _TextTrainer(AdversarialTrainer):
    """The adversarial loop (seqlab.train.adversarial) with MLE pre-training, on the encoded texts; G
    and D at their seeded initialisations, the MLE generator saved when pre-training ends."""

    def __init__(self, cfg: TextSeqganConfig, out: Path, device: torch.device, data: Tensor, vocab_size: int,
                 bos: int, reporter: Any):
        self.cfg, self.out, self.device, self.vocab_size, self.bos = cfg, out, device, vocab_size, bos
        schedule = AdversarialSchedule(
            batch_size=cfg.batch_size, g_lr=cfg.g_lr, d_lr=cfg.d_lr, grad_clip=cfg.grad_clip,
            rollout_rate=cfg.rollout_rate, num_rollouts=cfg.num_rollouts, d_pretrain_iters=cfg.d_pretrain_iters,
            d_negatives=data.shape[0], d_epochs=cfg.d_epochs, rounds=cfg.adv_rounds,
            d_iters_per_round=cfg.d_iters_per_round, mle_epochs=cfg.pretrain_epochs)
        state = {"epoch": 0, "mle_done": False, "d_iter": 0, "round": 0, "d_acc": [], "rewards": [],
                 "timings": {"mle_pretrain_s": 0.0, "d_pretrain_s": 0.0, "adversarial_s": 0.0, "pg_step_s": 0.0}}
        super().__init__(self.new_generator(), new_discriminator(vocab_size, cfg.max_len, cfg.seed, device), data,
                         schedule, device, out / "state", reporter, state,
                         pretrained=lambda: save_weights(self.generator, out / "mle_generator.safetensors"),
                         upgrade=self._upgrade)

    def new_generator(self) -> SequenceGenerator:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            return _new_generator(self.cfg, self.vocab_size, self.bos).to(self.device)

    def train(self, interrupt: InterruptFlag) -> None:
        if not self.resume():
            torch.manual_seed(self.cfg.seed + 1)
        self.run(SavePoints(interrupt, self.cfg.checkpoint_every_s, f"interrupted: checkpoint saved in {self.out}; "
                            f"continue with the same `seqlab seqgan train ... --out {self.out}` command"))
        save_weights(self.generator, self.out / "generator.safetensors")

    def _upgrade(self, state: dict[str, Any]) -> None:
        # a checkpoint from before `mle_done` was recorded: the MLE snapshot's file said it
        state.setdefault("mle_done", (self.out / "mle_generator.safetensors").is_file())
