"""The output filter: what matches (variants, whole words, Chinese substrings, phrases) and masking."""

from __future__ import annotations

import pytest

from seqlab.errors import SeqlabError
from seqlab.safety.filter import Offence, WordFilter, mask
from seqlab.safety.word_lists import default_words

WORDS = WordFilter(["fuck", "shit", "ass", "son of a bitch", "傻逼", "他妈的", "darn"])


@pytest.mark.parametrize(("text", "found"), [
    ("fuck", ["fuck"]), ("FUCK!", ["FUCK"]), ("what the fuuuuck", ["fuuuuck"]), ("ffuck", ["ffuck"]),
    ("Ｆｕｃｋ", ["Ｆｕｃｋ"]), ("fück", ["fück"]), ("f u c k", ["f u c k"]), ("f.u.c.k.", ["f.u.c.k"]),
    ("f-u-c-k", ["f-u-c-k"]), ("f. u. c. k", ["f. u. c. k"]), ("sh1t", ["sh1t"]), ("$hit", ["$hit"]),
    ("5h!t", ["5h!t"]), ("a$$", ["a$$"]), ("a55", ["a55"]), ("d4rn", ["d4rn"]), ("f*ck", ["f*ck"]), ("sh*t", ["sh*t"]),
    ("you ass!", ["ass"]),
    ("你是ass吗", ["ass"]), ("son of  a bitch", ["son of  a bitch"]), ("SON OF A BITCH", ["SON OF A BITCH"]),
    ("你这个傻逼", ["傻逼"]), ("傻 逼", ["傻 逼"]), ("傻-逼", ["傻-逼"]), ("他妈的真是", ["他妈的"]),
    ("fuck shit", ["fuck", "shit"]),
])
def test_listed_words_and_their_variants_are_found(text, found):
    assert [o.text for o in WORDS.find(text)] == found


@pytest.mark.parametrize("text", [
    "class", "assist", "passage", "bass guitar", "shitake", "the fuckers", "f uc k", "f.u-c.k", "a s.s",
    "Mr. Smith", "傻", "逼迫", "他妈", "sons of bitches", "darning", "***", "**bold**", "f**k",
])
def test_ordinary_words_and_inconsistent_spellings_are_not(text):
    assert WORDS.find(text) == []


def test_an_offence_names_the_listed_word_and_its_place():
    assert WORDS.find("oh F.U.C.K!") == [Offence(3, 10, "fuck", "F.U.C.K")]
    assert WORDS.find("这傻逼") == [Offence(1, 3, "傻逼", "傻逼")]


def test_mask_turns_each_character_of_an_offence_into_a_star():
    assert WORDS.mask("what the fuuuck, 傻逼!") == "what the ******, **!"
    assert WORDS.mask("a f u c k b") == "a ******* b"
    assert WORDS.mask("nothing here") == "nothing here"
    assert mask("abcdef", [Offence(1, 3, "x", "bc")], start=2, end=5) == "*de"


def test_a_longer_word_wins_where_two_begin():
    words = WordFilter(["bitch", "son of a bitch"])
    assert [o.word for o in words.find("you son of a bitch")] == ["son of a bitch"]


def test_accents_and_case_in_the_list_are_folded():
    assert WordFilter(["FÜCK"]).find("fuck") and WordFilter(["ｓｈｉｔ"]).find("shit")


def test_an_empty_list_or_word_is_an_error():
    with pytest.raises(SeqlabError, match="no words"):
        WordFilter([])
    with pytest.raises(SeqlabError, match="empty after Unicode normalisation"):
        WordFilter(["fine", "\u0301"])


def test_the_default_lists_on_english_and_chinese():
    words = WordFilter([*default_words("en"), *default_words("zh")])
    assert words.mask("well fuck you, you dumbass") == "well **** you, you *******"
    assert words.mask("你他妈的是个傻逼") == "你***是个**"
    assert words.mask("我们操作这台机器，日本很远，逼迫不好") == "我们操作这台机器，日本很远，逼迫不好"
    hamlet = "to be or not to be, that is the question"
    assert words.mask(hamlet) == hamlet
