"""Folding one character at a time: compatibility forms, accents and case; the map back to the original."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqlab.safety.normalise import FoldedText, fold, fold_text


@pytest.mark.parametrize(("text", "folded"), [
    ("FUCK", "fuck"), ("Ｆｕｃｋ", "fuck"), ("fück", "fuck"), ("fu\u0308ck", "fuck"), ("ⓕⓤⓒⓚ", "fuck"),
    ("Straße", "strasse"), ("ﬁne", "fine"), ("傻逼", "傻逼"), ("ＳＢ", "sb"),
])
def test_fold_text(text, folded):
    assert fold_text(text) == folded


def test_a_combining_mark_folds_to_nothing():
    assert fold("\u0308") == "" and fold("ß") == "ss"


@given(st.lists(st.text(max_size=8), max_size=6))
def test_folding_piece_by_piece_is_folding_the_whole(pieces):
    grown = FoldedText()
    for piece in pieces:
        grown.extend(piece)
    whole = FoldedText("".join(pieces))
    assert (grown.text, grown.folded, grown.origin) == (whole.text, whole.folded, whole.origin)
    assert grown.folded == fold_text(grown.text)
    for k, i in enumerate(whole.origin):  # each folded character comes from the character it points to
        assert whole.folded[k] in fold(whole.text[i])
    assert whole.original(len(whole.folded)) == len(whole.text)
