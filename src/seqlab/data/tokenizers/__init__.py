"""Tokenizers: `char`, `word` and byte-level `bpe`, one protocol, saved to and loaded from JSON.

    tok = train_tokenizer("char", texts)            # specials <pad> <unk> <bos> <eos> <sep> are ids 0..4
    ids = tok.encode("To be", add_eos=True)
    tok.save(run / "tokenizer.json"); tok = load_tokenizer(run / "tokenizer.json")
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from seqlab.data.tokenizers.base import SPECIALS, Tokenizer, VocabTokenizer
from seqlab.data.tokenizers.bpe import BPETokenizer
from seqlab.data.tokenizers.char import CharTokenizer
from seqlab.data.tokenizers.word import WordTokenizer, normalize_whitespace
from seqlab.errors import DataError

KINDS = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer}

__all__ = ["SPECIALS", "KINDS", "Tokenizer", "VocabTokenizer", "CharTokenizer", "WordTokenizer", "BPETokenizer",
           "normalize_whitespace", "train_tokenizer", "load_tokenizer"]


def train_tokenizer(kind: str, texts: Iterable[str], *, lang: str = "auto", vocab_size: int = 4000,
                    max_vocab: int | None = None, min_freq: int = 1) -> Tokenizer:
    """Train a tokenizer of `kind` on `texts` (bpe uses `vocab_size`; char and word use `max_vocab`)."""
    if min_freq < 1:
        raise DataError(f"min_freq must be >= 1, got {min_freq}")
    if kind == "char":
        return CharTokenizer.train(texts, max_vocab=max_vocab, min_freq=min_freq)
    if kind == "word":
        return WordTokenizer.train(texts, lang=lang, max_vocab=max_vocab, min_freq=min_freq)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size=vocab_size, min_freq=min_freq)
    raise DataError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer JSON written by `save` (any kind)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer file {str(path)!r} does not exist")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a tokenizer JSON file ({e})") from None
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in KINDS:
        raise DataError(f"{path}: unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        return KINDS[kind].from_dict(state)
    except DataError:
        raise
    except Exception as e:  # a missing key, a wrong type, or HF tokenizers rejecting its part
        raise DataError(f"{path}: a damaged {kind} tokenizer file ({type(e).__name__}: {e})") from None
