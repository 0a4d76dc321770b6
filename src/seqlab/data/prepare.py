"""From a DataConfig to tokenized train / val / test splits, cached on disk.

    data = prepare_data(cfg.data, seed=cfg.seed)          # trains the tokenizer on the train split only
    data.tokenizer, data.splits["train"].ids               # lm: a 1-D LongTensor token stream

Tasks:
  lm        `ids`: one token stream per split. A single-document corpus (tinyshakespeare) is its raw
            stream, no specials, exactly nanoGPT's; several documents or lines are each followed by <eos>.
  pairs     `pairs`: (source ids, target ids), no <bos>/<eos>, sources keep their last
            max_source_len tokens, targets their first max_target_len; `texts`: the raw strings;
            `PreparedData.truncation` counts what was cut (`Truncation.messages()` reports it).
  labelled  `labelled`: (label, ids); `PreparedData.labels` lists the labels, each also a special
            token `<label:NAME>` added to the tokenizer for label conditioning; `ids`: the stream
            `<label:L> text <eos>` of every example, which a language model learns to continue.

The result is cached under `cache_dir` (default `$XDG_CACHE_HOME/seqlab`, i.e. ~/.cache/seqlab) in
`prepared/<key>/`, the key hashing the DataConfig, the seed, the corpus files' sizes and times
and a given tokenizer. The directory is written under a temporary name and renamed when complete,
so an interrupted prepare (Ctrl-C) leaves nothing a later run could read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqlab.config import DataConfig
from seqlab.data.corpora import Corpus, Document, LabelledText, load_corpus
from seqlab.data.corpora.tinyshakespeare import cache_dir as user_cache_dir
from seqlab.data.corpus import split_lines
from seqlab.data.splits import contiguous_split, split_by_group
from seqlab.data.tokenizers import Tokenizer, load_tokenizer, train_tokenizer
from seqlab.errors import DataError
from seqlab.io import write_json

CACHE_VERSION = 2


@dataclass
class SplitData:
    name: str
    ids: torch.Tensor | None = None  # lm, labelled: (N,) int64
    pairs: list[tuple[list[int], list[int]]] | None = None
    texts: list[tuple[str, str]] | None = None
    labelled: list[tuple[str, list[int]]] | None = None

    def __len__(self) -> int:
        """Examples, or tokens for a plain stream."""
        for value in (self.pairs, self.labelled, self.ids):
            if value is not None:
                return len(value)
        return 0


@dataclass
class Truncation:
    """What data.max_source_len / data.max_target_len cut from a pairs corpus (all its splits)."""

    pairs: int
    sources_cut: int
    targets_cut: int
    max_source_len: int
    max_target_len: int
    source_p99: int  # tokens that keep 99% of the sources whole
    target_p99: int
    longest_source: int
    longest_target: int

    def messages(self) -> list[tuple[str, str]]:
        """(kind, one line) per side, kind "warning" when more than TRUNCATION_WARN of that side was cut,
        "cut" when less, "none" when nothing was.

            412 of 2,306 targets (17.9%) were cut to data.max_target_len=24 tokens; raise it with --set ...
        """
        sides = [("sources", self.sources_cut, "max_source_len", self.max_source_len, "their last ",
                  self.source_p99, self.longest_source),
                 ("targets", self.targets_cut, "max_target_len", self.max_target_len, "", self.target_p99,
                  self.longest_target)]
        out = []
        for side, cut, key, limit, which, p99, longest in sides:
            share = cut / self.pairs if self.pairs else 0.0
            line = f"{cut:,} of {self.pairs:,} {side} ({share:.1%}) were cut to {which}data.{key}={limit} tokens"
            if cut:
                wanted = p99 if p99 > limit else longest
                line += f"; raise it with --set data.{key}={wanted} (keeps {'all' if wanted == longest else '99%'} whole)"
            out.append(("warning" if share > TRUNCATION_WARN else "cut" if cut else "none", line))
        return out


TRUNCATION_WARN = 0.01  # more than this share of sources or targets cut: a warning


def count_truncation(source_lengths: list[int], target_lengths: list[int], cfg: DataConfig) -> Truncation:
    """How many of these (uncut) lengths data.max_source_len / data.max_target_len would cut."""
    def p99(lengths: list[int]) -> int:  # nearest rank
        ordered = sorted(lengths)
        return ordered[max(0, -(-99 * len(ordered) // 100) - 1)] if ordered else 0

    return Truncation(len(target_lengths), sum(n > cfg.max_source_len for n in source_lengths),
                      sum(n > cfg.max_target_len for n in target_lengths), cfg.max_source_len, cfg.max_target_len,
                      p99(source_lengths), p99(target_lengths), max(source_lengths, default=0),
                      max(target_lengths, default=0))


@dataclass
class PreparedData:
    task: str
    corpus: str
    tokenizer: Tokenizer
    splits: dict[str, SplitData]
    labels: list[str] = field(default_factory=list)
    cache_path: Path | None = None
    truncation: Truncation | None = None  # pairs: what max_source_len / max_target_len cut


def label_token(label: str) -> str:
    """The special token that conditions generation on `label`."""
    return f"<label:{label}>"


def check_min_length(split: SplitData, window: int) -> None:
    """A DataError unless `split` holds at least one training window (window + 1 tokens for a stream)."""
    if split.ids is not None:
        if len(split.ids) < window + 1:
            raise DataError(f"the {split.name} split has {len(split.ids)} tokens, fewer than one training window "
                            f"of {window + 1} (context_length {window} + 1); use a bigger corpus or a smaller "
                            "model.context_length")
    elif len(split) == 0:
        raise DataError(f"the {split.name} split has no examples; use a bigger corpus")


def prepare_data(cfg: DataConfig, seed: int, tokenizer: Tokenizer | None = None, cache_dir: Path | None = None,
                 use_cache: bool = True) -> PreparedData:
    """Load, split, tokenize (training the tokenizer on train only) and cache the data `cfg` describes."""
    corpus = load_corpus(cfg.corpus, encoding=cfg.encoding, history_turns=cfg.history_turns)
    root = Path(cache_dir) if cache_dir is not None else user_cache_dir()
    target = root / "prepared" / cache_key(cfg, seed, corpus, tokenizer)
    if use_cache and target.is_dir():
        try:
            return _read_cache(target, tokenizer)
        except (OSError, ValueError, KeyError, TypeError, DataError, SafetensorError):
            shutil.rmtree(target, ignore_errors=True)  # damaged by hand: build it again
    texts = split_texts(corpus, cfg, seed)
    if tokenizer is None:
        tokenizer = train_tokenizer(cfg.tokenizer, _train_strings(texts["train"]), lang=cfg.lang,
                                    vocab_size=cfg.vocab_size, max_vocab=cfg.max_vocab, min_freq=cfg.min_freq)
    labels = sorted({e.label for side in texts.values() for e in side}) if cfg.task == "labelled" else []
    tokenizer.add_special_tokens([label_token(lb) for lb in labels])
    splits = {side: _encode(side, items, tokenizer, cfg) for side, items in texts.items()}
    for split in splits.values():
        if len(split) == 0:
            raise DataError(f"corpus {corpus.name!r} is too small: its {split.name} split is empty")
    truncation = cut_pairs(splits, cfg) if cfg.task == "pairs" else None
    data = PreparedData(cfg.task, corpus.name, tokenizer, splits, labels, truncation=truncation)
    if use_cache:
        write_cache(target, data)
        data.cache_path = target
    return data


def cache_key(cfg: DataConfig, seed: int, corpus: Corpus, tokenizer: Tokenizer | None) -> str:
    stamps = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in corpus.files if f.exists()]
    given = None
    if tokenizer is not None:
        given = hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True).encode()).hexdigest()
    blob = json.dumps({"v": CACHE_VERSION, "data": dataclasses.asdict(cfg), "seed": seed, "corpus": corpus.name,
                       "files": stamps, "tokenizer": given}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------- splitting


def split_texts(corpus: Corpus, cfg: DataConfig, seed: int) -> dict[str, list[Any]]:
    """The corpus's items per split: strings for lm, Pair / LabelledText otherwise."""
    if cfg.task == "lm":
        return _lm_texts(corpus, cfg, seed)
    wanted = {"pairs": "pairs", "labelled": "labelled"}[cfg.task]
    if corpus.kind != wanted:
        example = {"pairs": 'JSONL {"source", "target"} or {"messages"}, TSV, chatterbot/<language>',
                   "labelled": 'JSONL {"text", "label"}'}[cfg.task]
        raise DataError(f"data.task {cfg.task} needs a {wanted} corpus ({example}); {corpus.name!r} is {corpus.kind}")
    items = list(corpus.examples)
    if cfg.split == "contiguous":
        return contiguous_split(items, cfg.val_fraction, cfg.test_fraction)
    key = (lambda p: (p.source, p.target)) if cfg.task == "pairs" else (lambda e: e.text)
    return split_by_group(items, group=lambda e: e.group, key=key, val_fraction=cfg.val_fraction,
                          test_fraction=cfg.test_fraction, seed=seed)


def _lm_texts(corpus: Corpus, cfg: DataConfig, seed: int) -> dict[str, list[str]]:
    if corpus.kind == "pairs":
        raise DataError(f"data.task lm needs a text corpus; {corpus.name!r} is a pairs corpus (use data.task=pairs)")
    docs = list(corpus.documents) or [Document(e.text, e.group, e.meta) for e in corpus.examples]
    if cfg.split == "contiguous":
        if len(docs) == 1:  # one stream: cut the text itself, as nanoGPT does
            return {side: [text] for side, text in contiguous_split(docs[0].text, cfg.val_fraction,
                                                                     cfg.test_fraction).items()}
        return {side: [d.text for d in part] for side, part in
                contiguous_split(docs, cfg.val_fraction, cfg.test_fraction).items()}
    if len(docs) == 1:  # one document and a random split: its lines are the examples
        docs = [Document(line, f"line {n}") for n, line in enumerate(split_lines(docs[0].text), 1) if line.strip()]
    parts = split_by_group(docs, group=lambda d: d.group, key=lambda d: d.text, val_fraction=cfg.val_fraction,
                           test_fraction=cfg.test_fraction, seed=seed)
    return {side: [d.text for d in part] for side, part in parts.items()}


def _train_strings(items: list[Any]) -> list[str]:
    if items and isinstance(items[0], str):
        return items
    if items and isinstance(items[0], LabelledText):
        return [e.text for e in items]
    return [s for p in items for s in (p.source, p.target)]


# ----------------------------------------------------------------------------- encoding


def _encode(side: str, items: list[Any], tok: Tokenizer, cfg: DataConfig) -> SplitData:
    if cfg.task == "lm":
        if len(items) == 1 and cfg.split == "contiguous":
            ids = tok.encode(items[0])  # the raw stream, no specials
        else:
            ids = [i for text in items for i in tok.encode(text, add_eos=True)]
        return SplitData(side, ids=torch.tensor(ids, dtype=torch.long))
    if cfg.task == "pairs":  # whole: `cut_pairs` cuts them, counting
        pairs = [(tok.encode(p.source), tok.encode(p.target)) for p in items]
        return SplitData(side, pairs=pairs, texts=[(p.source, p.target) for p in items])
    labelled = [(e.label, tok.encode(e.text)) for e in items]
    stream = [i for label, ids in labelled for i in (tok.token_to_id(label_token(label)), *ids, tok.eos_id)]
    return SplitData(side, ids=torch.tensor(stream, dtype=torch.long), labelled=labelled)


def cut_pairs(splits: dict[str, SplitData], cfg: DataConfig) -> Truncation:
    """Keep every source's last data.max_source_len tokens and every target's first max_target_len; count the cuts."""
    pairs = [pair for split in splits.values() for pair in split.pairs or []]
    truncation = count_truncation([len(s) for s, _ in pairs], [len(t) for _, t in pairs], cfg)
    for split in splits.values():
        split.pairs = [(s[-cfg.max_source_len:], t[:cfg.max_target_len]) for s, t in split.pairs or []]
    return truncation


# ----------------------------------------------------------------------------- cache


def write_cache(target: Path, data: PreparedData) -> None:
    """Write `target/` complete or not at all: build a hidden temporary sibling, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        data.tokenizer.save(tmp / "tokenizer.json")
        meta: dict[str, Any] = {"task": data.task, "corpus": data.corpus, "labels": data.labels, "splits": {},
                                "truncation": None if data.truncation is None else dataclasses.asdict(data.truncation)}
        for side, split in data.splits.items():
            meta["splits"][side] = _write_split(tmp, split)
        write_json(tmp / "meta.json", meta, indent=None)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished the same key first: theirs is as good
            if not target.is_dir():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_split(folder: Path, split: SplitData) -> dict[str, Any]:
    entry: dict[str, Any] = {"pairs": split.pairs, "texts": split.texts, "labelled": split.labelled}
    if split.ids is not None:
        save_file({"ids": split.ids.contiguous()}, str(folder / f"{split.name}.safetensors"))
        entry["ids"] = f"{split.name}.safetensors"
    return entry


def _read_cache(folder: Path, tokenizer: Tokenizer | None) -> PreparedData:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    tok = tokenizer if tokenizer is not None else load_tokenizer(folder / "tokenizer.json")
    if tokenizer is not None:
        tok.add_special_tokens([label_token(lb) for lb in meta["labels"]])
    splits = {}
    for side, entry in meta["splits"].items():
        ids = load_file(str(folder / entry["ids"]))["ids"] if "ids" in entry else None
        splits[side] = SplitData(side, ids=ids, pairs=_tuples(entry["pairs"]), texts=_tuples(entry["texts"]),
                                 labelled=_tuples(entry["labelled"]))
    truncation = Truncation(**meta["truncation"]) if meta["task"] == "pairs" else None  # older caches: rebuilt
    return PreparedData(meta["task"], meta["corpus"], tok, splits, meta["labels"], folder, truncation)


def _tuples(rows: list[list[Any]] | None) -> list[tuple[Any, ...]] | None:
    return None if rows is None else [tuple(r) for r in rows]

