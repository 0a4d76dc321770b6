"""Character tokenizer: one id per Unicode code point (any script, Chinese included)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from seqlab.data.tokenizers.base import VocabTokenizer, build_vocab


class CharTokenizer(VocabTokenizer):
    """Every code point is a token; code points not seen in training map to `<unk>` (counted as OOV).

    decode(encode(x)) == x for any x whose characters are all in the vocabulary.
    """

    kind = "char"

    def pieces(self, text: str) -> list[str]:
        return list(text)

    @classmethod
    def train(cls, texts: Iterable[str], *, max_vocab: int | None = None, min_freq: int = 1) -> CharTokenizer:
        chars = (c for text in texts for c in text)
        return cls(build_vocab(chars, max_vocab=max_vocab, min_freq=min_freq, by_frequency=False))

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(state["tokens"], state["specials"])
