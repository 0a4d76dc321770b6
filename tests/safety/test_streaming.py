"""The streaming filter: joined, its pieces are the masked whole text, and a listed word is only ever sent
as its asterisks, all at once — whatever the pieces the text comes in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.safety.filter import Scan, WordFilter
from seqlab.safety.streaming import clean_prefixes, mask_stream

WORDS = WordFilter(["fuck", "shit", "ass", "son of a bitch", "傻逼", "他妈的"])
CHUNKS = ["fuck", "f u c k", "f.u.c.k", "fuuuck", "FUCK", "sh1t", "a$$", "ass", "class", "assist",
          "son of a bitch", "son of a gun", "傻逼", "傻 逼", "他妈的", "他妈", "the", "fun", "a", "s", "f",
          "u", " ", " ", ".", "!", "\n", "é", "\u0308", "ß", "你好"]


@st.composite
def pieces_of_a_text(draw):
    """A text made of listed words, their variants, near misses and odd characters, cut into pieces."""
    text = "".join(draw(st.lists(st.one_of(st.sampled_from(CHUNKS), st.text(max_size=3)), max_size=14)))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=10)))
    return [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(pieces_of_a_text())
def test_streamed_pieces_join_to_the_masked_text_and_never_hold_part_of_a_word(pieces):
    text = "".join(pieces)
    masked = WORDS.mask(text)
    sent = list(mask_stream(pieces, WORDS))
    assert "".join(sent) == masked
    boundaries, at = set(), 0
    for piece in sent:
        at += len(piece)
        boundaries.add(at)
        assert piece  # no empty pieces
    for offence in WORDS.find(text):  # a masked word comes whole, in one piece: no cut falls inside it
        assert not any(offence.start < b < offence.end for b in boundaries), (offence, sent)
        assert set(masked[offence.start:offence.end]) == {"*"}


@settings(max_examples=200, deadline=None)
@given(pieces_of_a_text())
def test_the_text_before_the_first_listed_word_is_final_when_it_is_sent(pieces):
    """What regenerate sends: the text before the first listed word (trailing whitespace only at the end)."""
    text = "".join(pieces)
    offences = WORDS.find(text)
    clean = text[:offences[0].start].rstrip() if offences else text
    scan = Scan(WORDS)
    for prefix in clean_prefixes(pieces, scan):
        assert clean.startswith(prefix)
        if scan.offences:
            assert prefix == clean and scan.offences[0] == offences[0]
            break
    else:
        assert prefix == clean


def test_text_that_cannot_begin_a_listed_word_is_sent_at_once():
    assert list(mask_stream(["hello ", "wor", "ld"], WORDS)) == ["hello ", "wor", "ld"]


def test_a_possible_beginning_waits_for_the_next_character():
    assert list(mask_stream(["the fu", "n part"], WORDS)) == ["the ", "fun part"]
    assert list(mask_stream(["the fu", "ck part"], WORDS)) == ["the ", "**** part"]
    assert list(mask_stream(["the f u c", " k!"], WORDS)) == ["the ", "*******!"]
    assert list(mask_stream(["傻", "逼"], WORDS)) == ["**"]
    assert list(mask_stream(["傻", "瓜"], WORDS)) == ["傻瓜"]
    assert list(mask_stream(["ass"], WORDS)) == ["***"]  # at the end, a whole word is a word


def test_the_stream_returns_its_finished_scan():
    stream, sent = mask_stream(["you a$", "$ you"], WORDS), []
    while True:
        try:
            sent.append(next(stream))
        except StopIteration as end:
            scan = end.value
            break
    assert sent == ["you ", "*** you"]
    assert scan.text == "you a$$ you" and [(o.word, o.text) for o in scan.offences] == [("ass", "a$$")]


def test_a_word_that_could_begin_inside_a_found_one_does_not_overlap_it():
    words = WordFilter(["傻逼", "逼死你"])
    assert words.mask("傻逼死你") == "**死你"  # left to right: the second begins inside the first
    assert "".join(mask_stream(["傻逼死", "你"], words)) == "**死你"
