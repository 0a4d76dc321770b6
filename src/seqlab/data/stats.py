"""Corpus statistics: what `seqlab data inspect` prints and the demo reports.

The tokenizer is trained on the train part of the corpus's default split (contiguous for a
one-document corpus, otherwise seeded by group), and the OOV rate is measured on the held-out
part, so it says how much unseen vocabulary a model would meet (None for a corpus too small to
hold anything out). Lengths are in tokens, per example (per line for a one-document corpus). For
pairs, `truncation` counts what data.max_source_len / max_target_len would cut (see prepare.Truncation).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from seqlab.config import DataConfig
from seqlab.data.corpus import Corpus, LabelledText, Pair, split_lines
from seqlab.data.prepare import count_truncation, split_texts
from seqlab.data.tokenizers import Tokenizer, train_tokenizer
from seqlab.errors import DataError

PERCENTILES = (50, 90, 95, 99)
SAMPLE_CHARS = 200


def corpus_stats(corpus: Corpus, cfg: DataConfig | None = None, *, seed: int = 1337, samples: int = 3) -> dict[str, Any]:
    """Examples, characters, distinct characters, tokens, vocab size, OOV rate, length percentiles, samples."""
    cfg = _inspect_config(corpus, cfg or DataConfig(corpus=corpus.name))
    try:
        parts = split_texts(corpus, cfg, seed)
    except DataError:  # too small to hold anything out: train on all of it, and no OOV rate
        parts = {"train": [d.text for d in corpus.documents] or list(corpus.examples), "val": []}
    tok = train_tokenizer(cfg.tokenizer, _strings(parts["train"]), lang=cfg.lang, vocab_size=cfg.vocab_size,
                          max_vocab=cfg.max_vocab, min_freq=cfg.min_freq)
    oov = total = 0
    for text in _strings(parts["val"]):
        o, t = tok.count_oov(text)
        oov, total = oov + o, total + t
    texts = corpus.texts()
    lengths = [len(tok.encode(t)) for t in texts]  # per document; pairs: source, target, source, ...
    units = _units(corpus)
    stats: dict[str, Any] = {
        "name": corpus.name, "kind": corpus.kind, "source": corpus.source, "license": corpus.license,
        "tokenizer": cfg.tokenizer,
        "examples": len(corpus),
        "characters": sum(map(len, texts)),
        "distinct_characters": len(set().union(*map(set, texts))),
        "tokens": sum(lengths),
        "vocab_size": tok.vocab_size,
        "oov_rate": oov / total if total else None,
        "length_unit": "line" if corpus.kind == "text" and len(corpus) == 1 else "example",
        "length_percentiles": _length_percentiles(corpus, units, lengths, tok),
        "samples": [_sample(u) for u in random.Random(seed).sample(units, min(samples, len(units)))],
    }
    if corpus.kind == "pairs":
        stats["pairs"] = len(corpus.examples)
        stats["pairs_deduplicated"] = len({(p.source, p.target) for p in corpus.examples})
        stats["truncation"] = dataclasses.asdict(count_truncation(lengths[0::2], lengths[1::2], cfg))
    if corpus.kind == "labelled":
        stats["labels"] = sorted({e.label for e in corpus.examples})
    return stats


def _inspect_config(corpus: Corpus, cfg: DataConfig) -> DataConfig:
    """The task that fits the corpus; a contiguous split for a single stream."""
    task = {"text": "lm", "pairs": "pairs", "labelled": "labelled"}[corpus.kind]
    split = "contiguous" if corpus.kind == "text" and len(corpus) == 1 else cfg.split
    return dataclasses.replace(cfg, task=task, split=split)


def _strings(items: list[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, Pair):
            out += [item.source, item.target]
        else:
            out.append(item.text if isinstance(item, LabelledText) else item)
    return out


def _units(corpus: Corpus) -> list[Any]:
    if corpus.kind == "text" and len(corpus) == 1:
        return [line for line in split_lines(corpus.documents[0].text) if line.strip()]
    if corpus.kind == "text":
        return [d.text for d in corpus.documents]
    return list(corpus.examples)


def _length_percentiles(corpus: Corpus, units: list[Any], lengths: list[int], tok: Tokenizer) -> dict[str, Any]:
    """Percentiles of example lengths; `lengths` are those of `corpus.texts()`, reused where they are the units."""
    if corpus.kind == "pairs":
        return {"source": _percentiles(lengths[0::2]), "target": _percentiles(lengths[1::2])}
    if corpus.kind == "text" and len(corpus) == 1:  # the lines of one stream
        return _percentiles([len(tok.encode(line)) for line in units])
    return _percentiles(lengths)


def _percentiles(lengths: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles: the smallest length with at least p% of the examples at or below it."""
    ordered = sorted(lengths)
    n = len(ordered)
    out = {"min": ordered[0]}
    for p in PERCENTILES:
        out[f"p{p}"] = ordered[max(0, -(-p * n // 100) - 1)]
    out["max"] = ordered[-1]
    return out


def _sample(unit: Any) -> Any:
    if isinstance(unit, Pair):
        return {"source": unit.source[:SAMPLE_CHARS], "target": unit.target[:SAMPLE_CHARS]}
    if isinstance(unit, LabelledText):
        return {"text": unit.text[:SAMPLE_CHARS], "label": unit.label}
    return unit[:SAMPLE_CHARS]
