"""The output filter on streamed text: pieces are held back until the filter's verdict on them is final.

    for piece in mask_stream(stream(model, tokenizer, "hello"), WordFilter(["darn"])):
        print(piece, end="")
    masked = MaskedText(WordFilter(["darn"]))      # the same, pushed: a piece in, what may be sent out
    masked.feed("oh da") == "oh " and masked.feed("rn it") == "**** it" and masked.close() == ""

A piece is sent once no listed word could still begin in it (`seqlab.safety.filter.Scan`): while the text
ends in "da" (which may become "darn"), "da" waits; a listed word is sent only as asterisks, whole or
not at all. Joined, the pieces are exactly `WordFilter.mask` of the whole text.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator

from seqlab.safety.filter import Scan, WordFilter, mask


class MaskedText:
    """A text pushed piece by piece, given back masked as its verdict becomes final (the module docstring);
    `scan` holds the whole text and its offences."""

    def __init__(self, word_filter: WordFilter):
        self.scan = Scan(word_filter)
        self.sent = 0  # characters given back

    def feed(self, piece: str) -> str:
        """Add `piece`; the masked text that is final now ("" while a listed word could still begin)."""
        self.scan.feed(piece)
        return self._release(self.scan.settled)

    def close(self) -> str:
        """The text is complete: the rest of it, masked."""
        self.scan.close()
        return self._release(len(self.scan.text))

    def _release(self, end: int) -> str:
        if end <= self.sent:
            return ""
        out, self.sent = mask(self.scan.text, self.scan.offences, self.sent, end), end
        return out


def mask_stream(pieces: Iterable[str], word_filter: WordFilter) -> Generator[str, None, Scan]:
    """`pieces` with every listed word masked, each sent once its verdict is final (see the module docstring);
    returns the finished scan (the whole text and its offences)."""
    masked = MaskedText(word_filter)
    for piece in pieces:
        if out := masked.feed(piece):
            yield out
    if rest := masked.close():
        yield rest
    return masked.scan


def clean_prefixes(pieces: Iterable[str], scan: Scan) -> Iterator[str]:
    """After each piece fed to `scan`, and once more when `pieces` run out (the scan closed): `clean_prefix`."""
    for piece in pieces:
        scan.feed(piece)
        yield clean_prefix(scan)
    scan.close()
    yield clean_prefix(scan, complete=True)


def clean_prefix(scan: Scan, complete: bool = False) -> str:
    """The settled text before the first listed word, which a stream that stops at a listed word may send.
    Whitespace at its end waits for what follows it (unless the text is `complete`, its scan closed, and
    clean): a word tokenizer's text puts the space before a word with the word, so a retry that ends where
    the listed word stood has none there."""
    end = scan.settled if not scan.offences else min(scan.settled, scan.offences[0].start)
    text = scan.text[:end]
    return text if complete and not scan.offences else text.rstrip()
