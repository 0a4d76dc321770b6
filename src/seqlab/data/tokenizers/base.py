"""The tokenizer protocol, the special tokens, and the vocabulary shared by the char and word tokenizers.

Every tokenizer maps text to integer ids and back, knows its special tokens, and saves itself to
one JSON file (`tokenizer.json` in a run directory). Special tokens are never split: an occurrence
of `<sep>` (or an added `<label:positive>`) in the text becomes its single id, and `decode(...,
skip_special=True)` drops them all except `<unk>`, which stays visible.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from seqlab.errors import DataError
from seqlab.io import write_json

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>", "<sep>"]  # ids 0..4 in every tokenizer seqlab trains
PAD, UNK, BOS, EOS, SEP = SPECIALS


@runtime_checkable
class Tokenizer(Protocol):
    kind: str
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int
    sep_id: int

    @property
    def vocab_size(self) -> int: ...  # specials included

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str: ...

    def token_to_id(self, tok: str) -> int | None: ...

    def id_to_token(self, i: int) -> str: ...

    def add_special_tokens(self, tokens: list[str]) -> None: ...

    def count_oov(self, text: str) -> tuple[int, int]: ...  # (tokens mapped to <unk>, all tokens)

    def to_dict(self) -> dict[str, Any]: ...  # the JSON `save` writes

    def save(self, path: str | Path) -> None: ...


def split_specials(text: str, specials: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """Yield (piece, is_special) so that special-token strings are never split; longest match first."""
    if not specials:
        if text:
            yield text, False
        return
    pattern = "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True))
    pos = 0
    for m in re.finditer(pattern, text):
        if m.start() > pos:
            yield text[pos:m.start()], False
        yield m.group(), True
        pos = m.end()
    if pos < len(text):
        yield text[pos:], False


class VocabTokenizer(ABC):
    """A tokenizer over an explicit token list: `SPECIALS` first (ids 0..4), then tokens by frequency.

    Subclasses say how text splits into tokens (`pieces`) and how tokens join back (`join`).
    """

    kind = "vocab"

    def __init__(self, tokens: list[str], specials: list[str] | None = None):
        self.tokens = list(tokens)
        self.specials = list(specials or SPECIALS)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise DataError(f"{self.kind} tokenizer: duplicate tokens in the vocabulary")
        missing = [s for s in SPECIALS if s not in self.index]
        if missing:
            raise DataError(f"{self.kind} tokenizer: the vocabulary lacks the special tokens {missing}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.sep_id = (self.index[s] for s in SPECIALS)
        self._skip = {self.index[s] for s in self.specials} - {self.unk_id}

    # -- what a subclass defines
    @abstractmethod
    def pieces(self, text: str) -> list[str]:
        """Split text that holds no special token into vocabulary pieces."""

    def join(self, pieces: list[str]) -> str:
        return "".join(pieces)

    def extra_state(self) -> dict[str, Any]:
        return {}

    # -- the protocol
    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = [self.bos_id] if add_bos else []
        for piece, special in split_specials(text, self.specials):
            if special:
                ids.append(self.index[piece])
            else:
                ids.extend(self.index.get(p, self.unk_id) for p in self.pieces(piece))
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        out = []
        for i in ids:
            i = int(i)
            if skip_special and i in self._skip:
                continue
            out.append(self.id_to_token(i))
        return self.join(out)

    def token_to_id(self, tok: str) -> int | None:
        return self.index.get(tok)

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self.tokens):
            raise DataError(f"token id {i} is outside the vocabulary (size {len(self.tokens)})")
        return self.tokens[i]

    def add_special_tokens(self, tokens: list[str]) -> None:
        for tok in tokens:
            if tok not in self.index:
                self.index[tok] = len(self.tokens)
                self.tokens.append(tok)
            if tok not in self.specials:
                self.specials.append(tok)
            self._skip.add(self.index[tok])

    def count_oov(self, text: str) -> tuple[int, int]:
        oov = total = 0
        for piece, special in split_specials(text, self.specials):
            pieces = [piece] if special else self.pieces(piece)
            total += len(pieces)
            oov += sum(p not in self.index for p in pieces)
        return oov, total

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": 1, "specials": self.specials, "tokens": self.tokens,
                **self.extra_state()}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), indent=None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def build_vocab(pieces: Iterable[str], *, max_vocab: int | None, min_freq: int, by_frequency: bool = True) -> list[str]:
    """SPECIALS, then the tokens seen at least `min_freq` times.

    `max_vocab` caps the whole vocabulary, specials included, keeping the most frequent tokens
    (ties: by string). The kept tokens are ordered by frequency, or by string when `by_frequency`
    is false (the char tokenizer's order, so its ids are nanoGPT's shifted by the 5 specials).
    """
    if min_freq < 1:
        raise DataError(f"min_freq must be >= 1, got {min_freq}")
    if max_vocab is not None and max_vocab <= len(SPECIALS):
        raise DataError(f"max_vocab must be > {len(SPECIALS)} (the special tokens), got {max_vocab}")
    counts = Counter(pieces)
    for s in SPECIALS:
        counts.pop(s, None)
    kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    if max_vocab is not None:
        kept = kept[: max_vocab - len(SPECIALS)]
    return SPECIALS + (kept if by_frequency else sorted(kept))
