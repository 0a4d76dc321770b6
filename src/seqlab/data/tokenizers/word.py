"""Word tokenizer: Unicode-aware words and punctuation, Chinese segmented with jieba.

Whitespace normalisation (the only loss in the round trip): line breaks become `\\n`; any other
run of whitespace becomes one space; spaces at the start or end of a line, and spaces just
before a special token, are dropped. Then

    decode(encode(x)) == normalize_whitespace(x)     for x without special-token strings.

Tokens carry the single space that precedes them (" world", as GPT-2 does), so decoding is a
plain concatenation. A word is a run of `\\w` characters (letters, digits, `_`, in any script);
every other non-space character is a token of its own; `\\n` is a token. With lang "zh" (given, or
detected at training time when more than 30% of the characters are Han), runs of Han characters
are segmented with jieba, imported only then.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from seqlab.data.tokenizers.base import SPECIALS, VocabTokenizer, build_vocab, split_specials
from seqlab.errors import DataError

_TOKEN = re.compile(r"\n| ?\w+| ?[^\w\s]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")
_SPACES = re.compile(r"[^\S\n]+")
_EDGE_SPACES = re.compile(r" *\n *")
CJK_THRESHOLD = 0.3  # fraction of Han characters above which lang "auto" means Chinese


def normalize_whitespace(text: str) -> str:
    """The whitespace normalisation the word tokenizer's round trip is exact up to."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _EDGE_SPACES.sub("\n", _SPACES.sub(" ", text))
    return text.strip(" ")


def detect_lang(texts: Iterable[str], sample_chars: int = 1_000_000) -> str:
    """'zh' when more than 30% of the (first million) non-space characters are Han, else 'en'."""
    han = total = 0
    for text in texts:
        chunk = "".join(text.split())[: sample_chars - total]
        han += len(_HAN.findall(chunk))
        total += len(chunk)
        if total >= sample_chars:
            break
    return "zh" if total and han / total > CJK_THRESHOLD else "en"


@cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading on stderr
    return jieba


class WordTokenizer(VocabTokenizer):
    kind = "word"

    def __init__(self, tokens: list[str], specials: list[str] | None = None, lang: str = "en"):
        super().__init__(tokens, specials)
        if lang not in ("en", "zh"):
            raise DataError(f"word tokenizer: lang must be 'en' or 'zh', got {lang!r}")
        self.lang = lang

    def pieces(self, text: str) -> list[str]:
        return split_words(text, self.lang)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        # Normalise once over the whole text, so a space after a special token stays on the next word.
        return super().encode(normalize_whitespace(text), add_bos, add_eos)

    def count_oov(self, text: str) -> tuple[int, int]:
        return super().count_oov(normalize_whitespace(text))

    def extra_state(self) -> dict[str, Any]:
        return {"lang": self.lang}

    @classmethod
    def train(cls, texts: Iterable[str], *, lang: str = "auto", max_vocab: int | None = None,
              min_freq: int = 1) -> WordTokenizer:
        texts = list(texts)
        if lang == "auto":
            lang = detect_lang(texts)
        words = (w for text in texts for piece, special in split_specials(normalize_whitespace(text), SPECIALS)
                 if not special for w in split_words(piece, lang))
        return cls(build_vocab(words, max_vocab=max_vocab, min_freq=min_freq), lang=lang)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> WordTokenizer:
        return cls(state["tokens"], state["specials"], state.get("lang", "en"))


def split_words(text: str, lang: str) -> list[str]:
    """Word and punctuation tokens of normalised text; a space left before a special token is dropped."""
    words = _TOKEN.findall(text)
    if lang != "zh":
        return words
    return list(itertools.chain.from_iterable(_segment(w) for w in words))


def _segment(word: str) -> list[str]:
    """Split a word token holding Han characters with jieba; its leading space stays on the first piece."""
    if not _HAN.search(word):
        return [word]
    lead, body = (" ", word[1:]) if word.startswith(" ") else ("", word)
    parts = [p for p in _jieba().lcut(body, HMM=True) if p]
    return [lead + parts[0], *parts[1:]]
