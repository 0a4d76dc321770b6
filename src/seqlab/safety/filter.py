"""The output filter: where a text holds a listed word, in a complete text or one that is still growing.

    words = WordFilter(["fuck", "傻逼"])
    words.find("what the f.u.c.k, 傻 逼")
    # [Offence(9, 16, 'fuck', 'f.u.c.k'), Offence(18, 21, '傻逼', '傻 逼')]
    words.mask("what the fuuuck")   # "what the ******"

Matching is on folded text (`seqlab.safety.normalise`: NFKD without accents, case folded). A listed
word also matches

- its letters' leetspeak look-alikes, and "*" for a vowel: "sh1t", "$hit", "a55", "f*ck";
- each letter repeated: "fuuuck", "shiiit" (spaced-script words only);
- its letters spelt out with one separator, the same each time: "f u c k", "f.u.c.k", "f-u-c-k", "傻 逼".

A word of a spaced script (Latin, Cyrillic...) matches only as a whole word: not after or before a
letter or digit of a spaced script ("ass" matches in "you ass!" and "你是ass", not in "class" or
"assist"). A word holding a Chinese or Japanese character matches anywhere, as a substring. A phrase
("son of a bitch") matches with any whitespace between its words.

Growing text. `Scan` takes a text piece by piece and knows, after each piece, up to where its verdict is
final. A position p of the folded text is *open* when the text from p to its end could still begin a
listed word (the `prefix` pattern, which matches every prefix of a match, matches there): every match
that starts before the first open position lies inside the text already, with the character after it,
and is the match the complete text will have (matches are found left to right, longest word first, so
they depend only on the text before them and their own characters). So a scan settles the text up to
the first open position, or past the last match found, and a stream can send it; the complete text's
offences are the same as the streamed one's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from seqlab.errors import SeqlabError
from seqlab.safety.normalise import LOOK_ALIKES, FoldedText, fold_text

# Chinese and Japanese characters (and their punctuation): words in these scripts are not spaced apart
UNSPACED = ("\u2e80-\u2fdf\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
            "\U00020000-\U0003134f")
# a letter or digit of a spaced script: what a whole word may not have next to it
WORD_CHAR = f"[^\\W_{UNSPACED}]"
# what may stand between the letters of a spelled-out word ("f u c k", "f.u.c.k", "f. u. c. k")
SEPARATOR = r"[\s.\-_*~,/]{0,2}"


@dataclass(frozen=True)
class Offence:
    start: int  # in the original text
    end: int
    word: str  # the listed word (folded)
    text: str  # as written


class WordFilter:
    """Finds listed words and phrases in text (see the module docstring). `words` are folded and
    deduplicated; longer ones win where two match at the same place."""

    def __init__(self, words: Iterable[str]):
        folded = {" ".join(fold_text(w).split()) for w in words}
        if "" in folded:
            raise SeqlabError("a filtered word is empty after Unicode normalisation (only accents or "
                              "spaces); remove it from the word list")
        if not folded:
            raise SeqlabError("the output filter has no words to look for")
        self.words = sorted(folded, key=lambda w: (-len(w), w))
        alternatives = [_pattern(w, k) for k, w in enumerate(self.words)]
        # the characters a match can begin with: a scan looks for the beginning of a word only at these
        self.first_chars = frozenset(c for w in self.words for c in w[0] + LOOK_ALIKES.get(w[0], ""))
        begins = "(?=[" + re.escape("".join(sorted(self.first_chars))) + "])"  # lets `re` skip other places
        self.pattern = re.compile(begins + "(?:" + "|".join(full for full, _ in alternatives) + ")")
        self.prefix = re.compile("|".join(prefix for _, prefix in alternatives))
        self._each = [re.compile(full) for full, _ in alternatives]  # which word matched: the first that does

    def find(self, text: str) -> list[Offence]:
        scan = Scan(self)
        scan.feed(text, last=True)
        return scan.offences

    def mask(self, text: str) -> str:
        return mask(text, self.find(text))

    def word_at(self, folded: str, start: int) -> str:
        """The listed word that `pattern` matches at `start` (its first alternative that matches there)."""
        return next(w for w, p in zip(self.words, self._each, strict=True) if p.match(folded, start))


def mask(text: str, offences: Iterable[Offence], start: int = 0, end: int | None = None) -> str:
    """text[start:end] with every character of an offence turned into "*"."""
    end = len(text) if end is None else end
    chars = list(text[start:end])
    for o in offences:
        for i in range(max(o.start, start), min(o.end, end)):
            chars[i - start] = "*"
    return "".join(chars)


class Scan:
    """The offences of a text that grows piece by piece; those in `offences` are final, and so is the verdict
    on `text[:settled]` (see the module docstring). `close()` when the text is complete."""

    def __init__(self, word_filter: WordFilter):
        self.filter = word_filter
        self._text = FoldedText()
        self.offences: list[Offence] = []
        self._done = 0  # folded index: everything before it is final

    @property
    def text(self) -> str:
        return self._text.text

    @property
    def settled(self) -> int:
        """The original text up to here is final: no offence found later starts before it."""
        return self._text.original(self._done)

    def feed(self, piece: str, last: bool = False) -> None:
        """Add `piece` to the text (`last`: and close it)."""
        self._text.extend(piece)
        self._advance(len(self._text.folded) if last else self._first_open())

    def close(self) -> None:
        self._advance(len(self._text.folded))

    def _first_open(self) -> int:
        folded, first_chars = self._text.folded, self.filter.first_chars
        for p in range(self._done, len(folded)):
            if folded[p] in first_chars and self.filter.prefix.fullmatch(folded, p):
                return p
        return len(folded)

    def _advance(self, hold: int) -> None:
        """Record the matches that start before `hold`, and settle up to `hold` or the last one's end."""
        t = self._text
        done = hold
        for m in self.filter.pattern.finditer(t.folded, self._done):
            if m.start() >= hold:
                break
            start, end = t.original(m.start()), t.origin[m.end() - 1] + 1
            word = self.filter.word_at(t.folded, m.start())
            self.offences.append(Offence(start, end, word, t.text[start:end]))
            done = max(done, m.end())
        self._done = done


def _pattern(word: str, k: int) -> tuple[str, str]:
    """The regular expressions of one folded listed word: its matches, and every prefix of a match.

    Each begins with a character class (the check that no letter comes before the word follows its first
    character), so that `re` skips the places where no listed word can begin."""
    unspaced = re.search(f"[{UNSPACED}]", word) is not None
    if unspaced:
        word = "".join(word.split())
    parts = word.split(" ")
    spelled_out = len(parts) == 1 and len(word) > 1
    separator = f"(?P<s{k}>{SEPARATOR})"
    elements: list[str] = []
    for i, part in enumerate(parts):
        if i:
            elements.append(r"\s+")
        for j, char in enumerate(part):
            if j and spelled_out:
                elements.append(separator if j == 1 else f"(?P=s{k})")
            elements.append(_letter(char) + ("+" if not unspaced and char.isalpha() else ""))
    if not unspaced and re.match(WORD_CHAR, word):  # c+ -> c (not after a letter) c*
        first = _letter(word[0])
        elements[0] = first + f"(?<!{WORD_CHAR}{first})" + (first + "*" if elements[0].endswith("+") else "")
    after = f"(?!{WORD_CHAR})" if not unspaced and re.match(WORD_CHAR, word[-1]) else ""
    nested = elements[-1]
    for element in reversed(elements[:-1]):
        nested = f"{element}(?:{nested})?"
    return "".join(elements) + after, nested


def _letter(char: str) -> str:
    """One character of a listed word: itself or a look-alike."""
    return "[" + re.escape(char + LOOK_ALIKES[char]) + "]" if char in LOOK_ALIKES else re.escape(char)
