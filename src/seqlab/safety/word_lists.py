"""The word lists of the output filter: seqlab's own (English and Chinese, in `seqlab/safety/words/`) and a
user's file (`safety.words`: UTF-8, one word or phrase a line, blank and `#` lines skipped)."""

from __future__ import annotations

import os
from functools import cache
from importlib import resources

from seqlab.errors import SeqlabError

LANGUAGES = ("en", "zh")


@cache
def default_words(language: str) -> tuple[str, ...]:
    """seqlab's list for `language` ("en" or "zh")."""
    if language not in LANGUAGES:
        raise SeqlabError(f"seqlab ships word lists for {', '.join(LANGUAGES)}, not {language!r}")
    text = (resources.files("seqlab.safety") / "words" / f"{language}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def read_user_words(path: str | os.PathLike) -> list[str]:
    """The words of a `safety.words` file; a missing, unreadable, binary or empty file is a one-line
    SeqlabError naming the key."""
    from seqlab.decode.banned_words import read_word_list

    try:
        return read_word_list(path)
    except SeqlabError as e:
        raise SeqlabError(f"safety.words: {e}") from None
