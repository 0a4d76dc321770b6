"""seqlab's own word lists (package data) and a user's `safety.words` file."""

from __future__ import annotations

import pytest

from seqlab.errors import SeqlabError
from seqlab.safety.filter import WordFilter
from seqlab.safety.word_lists import default_words, read_user_words


def test_the_default_lists_are_modest_real_and_compile():
    en, zh = default_words("en"), default_words("zh")
    assert 20 <= len(en) <= 100 and 10 <= len(zh) <= 60
    assert {"fuck", "shit", "son of a bitch"} <= set(en) and {"他妈的", "傻逼", "操你妈"} <= set(zh)
    assert not [w for w in zh if len(w) == 1 and w not in "肏屄"]  # no single characters of ordinary words
    assert WordFilter(en + zh).words


def test_an_unknown_language_is_an_error():
    with pytest.raises(SeqlabError, match="en, zh"):
        default_words("fr")


def test_a_user_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# mine\nfrack\n\n  smeg  \n", encoding="utf-8")
    assert read_user_words(path) == ["frack", "smeg"]


@pytest.mark.parametrize("kind", ["empty", "comments", "missing", "directory", "binary", "latin-1"])
def test_a_bad_user_file_is_one_line_naming_the_key(tmp_path, kind):
    path = tmp_path / "words.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "comments":
        path.write_text("# nothing\n\n", encoding="utf-8")
    elif kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\x00\x01\x02frack")
    elif kind == "latin-1":
        path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(SeqlabError) as error:
        read_user_words(path)
    message = str(error.value)
    assert message.startswith("safety.words: ") and "\n" not in message and str(path) in message
