"""Text as the output filter compares it: folded one character at a time, each folded character pointing
back to the character it came from (so a match can be masked in the text the user sees).

    fold(c) = casefold(NFKD(c) without its combining marks)      "Ｆ" -> "f", "ü" -> "u", "ß" -> "ss"

NFKD gives NFKC's compatibility folding (full-width and circled letters, ligatures) and splits accents
off, which are dropped: "fück" reads as "fuck". Folding a character never depends on its neighbours, so
a text streamed piece by piece folds exactly as the whole text does.

Leetspeak is not rewritten in the text (a "1" may be a digit); instead a listed letter matches its
look-alikes (`LOOK_ALIKES`: "s" matches "s", "5" and "$"; a vowel matches "*", as in "f*ck"), in
`seqlab.safety.filter`'s patterns.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# letter -> the characters written for it in leetspeak
LOOK_ALIKES = {"a": "4@*", "b": "8", "e": "3*", "g": "9", "i": "1!|*", "l": "1|", "o": "0*", "s": "5$", "t": "7+",
               "u": "*"}


@lru_cache(maxsize=8192)
def fold(char: str) -> str:
    """One character as the filter reads it (possibly "" for a combining mark, or two for "ß")."""
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def fold_text(text: str) -> str:
    return "".join(fold(c) for c in text)


class FoldedText:
    """A growing text and its folding: `folded[k]` came from `text[origin[k]]`."""

    def __init__(self, text: str = ""):
        self.text = ""
        self.folded = ""
        self.origin: list[int] = []
        self.extend(text)

    def extend(self, piece: str) -> None:
        parts = []
        for i, char in enumerate(piece, start=len(self.text)):
            f = fold(char)
            parts.append(f)
            self.origin.extend([i] * len(f))
        self.text += piece
        self.folded += "".join(parts)

    def original(self, k: int) -> int:
        """The index in `text` where folded position `k` starts (len(text) at the folded text's end)."""
        return self.origin[k] if k < len(self.origin) else len(self.text)
