"""Which text encoding an undecodable file is probably in, for the error that asks for one.

    guess_encoding(data, bad_offset=17, tried="utf-8")   # -> "gb18030", "big5", "cp1252"... or None

charset-normalizer ranks the encodings that read a sample of the file cleanly. On a short sample it
is often unsure between look-alikes (gb18030 or cp949, cp1252 or mac_latin2), so among the
candidates about as clean as the best, the one most used for text files wins (`COMMON`).
"""

from __future__ import annotations

import codecs

HEAD_BYTES = 64 * 1024  # the guess reads the file's start ...
AROUND_BYTES = 8 * 1024  # ... and this much either side of the first bad byte: fast on any size of file
CHAOS_MARGIN = 0.05  # candidates whose mess ratio is within this of the cleanest one count as equally clean
COMMON = ("utf-16", "gb18030", "big5", "cp1252", "shift_jis", "cp932", "euc_kr", "cp949", "cp1251", "cp1250",
          "koi8-r", "euc_jp", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "iso8859-15")


def guess_encoding(data: bytes, bad_offset: int, tried: str) -> str | None:
    """The likely encoding of `data`, which `tried` failed to decode at `bad_offset`; None when unsure.

    A guess is returned only if it decodes the whole of `data`.
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(_sample(data, bad_offset)))
    if not matches:
        return None
    cleanest = min(m.chaos for m in matches)
    ranked = []
    for order, match in enumerate(matches):
        name = min((_canonical(n) for n in match.could_be_from_charset or [match.encoding]), key=_rank)
        ranked.append(((match.chaos > cleanest + CHAOS_MARGIN, _rank(name), order), name))
    for _, name in sorted(ranked):
        if name != _canonical(tried) and _decodes(data, name):
            return name
    return None


def looks_like_damaged_utf8(data: bytes, bad_offset: int) -> bool:
    """True when the sample is mostly well-formed multi-byte UTF-8: a few bad bytes in a UTF-8 file, not
    another encoding (whose non-ASCII bytes rarely form valid UTF-8)."""
    text = _sample(data, bad_offset).decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 127) - bad
    return good >= 10 * max(bad, 1)


def _sample(data: bytes, bad_offset: int) -> bytes:
    """The first HEAD_BYTES and the lines around `bad_offset`, cut at line ends (not inside a character)."""
    if len(data) <= HEAD_BYTES + 2 * AROUND_BYTES:
        return data
    head_end = data.rfind(b"\n", 0, HEAD_BYTES) + 1 or HEAD_BYTES
    start = max(head_end, data.rfind(b"\n", 0, max(bad_offset - AROUND_BYTES, 0)) + 1)
    end = data.find(b"\n", bad_offset + AROUND_BYTES)
    return data[:head_end] + data[start:len(data) if end < 0 else end + 1]


def _canonical(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return name


def _rank(name: str) -> int:
    return COMMON.index(name) if name in COMMON else len(COMMON)


def _decodes(data: bytes, name: str) -> bool:
    try:
        data.decode(name)
    except (UnicodeDecodeError, LookupError):
        return False
    return True
