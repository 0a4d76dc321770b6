"""The output filter on streamed text: pieces are held back until the filter's verdict on them is final.

    for piece in mask_stream(stream(model, tokenizer, "hello"), WordFilter(["darn"])):
        print(piece, end="")

A piece is sent once no listed word could still begin in it (`seqlab.safety.filter.Scan`): while the text
ends in "da" (which may become "darn"), "da" waits; a listed word is sent only as asterisks, whole or
not at all. Joined, the pieces are exactly `WordFilter.mask` of the whole text.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator

from seqlab.safety.filter import Scan, WordFilter, mask


def mask_stream(pieces: Iterable[str], word_filter: WordFilter) -> Generator[str, None, Scan]:
    """`pieces` with every listed word masked, each sent once its verdict is final (see the module docstring);
    returns the finished scan (the whole text and its offences)."""
    scan = Scan(word_filter)
    sent = 0
    for piece in pieces:
        scan.feed(piece)
        if scan.settled > sent:
            yield mask(scan.text, scan.offences, sent, scan.settled)
            sent = scan.settled
    scan.close()
    if len(scan.text) > sent:
        yield mask(scan.text, scan.offences, sent)
    return scan


def clean_prefixes(pieces: Iterable[str], scan: Scan) -> Iterator[str]:
    """After each piece fed to `scan`, and once more when `pieces` run out (the scan closed): the settled text
    before the first listed word, which a stream that stops at a listed word may send. Whitespace at its
    end waits for what follows it: a word tokenizer's text puts the space before a word with the word, so a
    retry that ends where the listed word stood has none there."""
    for piece in pieces:
        scan.feed(piece)
        yield _clean_prefix(scan).rstrip()
    scan.close()
    yield _clean_prefix(scan) if not scan.offences else _clean_prefix(scan).rstrip()


def _clean_prefix(scan: Scan) -> str:
    end = scan.settled if not scan.offences else min(scan.settled, scan.offences[0].start)
    return scan.text[:end]
