"""OpenAI's stop semantics on streamed pieces: the text ends before the first stop string, and nothing that
may start one is sent before it is settled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from seqlab.serve.stops import StopTrimmer


def trimmed(pieces, stops):
    trimmer = StopTrimmer(stops)
    out = [trimmer.push(p) for p in pieces]
    return out, trimmer.flush()


def test_a_partial_match_is_held_back_then_dropped_with_the_stop_string():
    assert trimmed(["Hi.\n", "\nBye"], ["\n\n"]) == (["Hi.", ""], "")


def test_a_partial_match_that_does_not_complete_is_sent():
    assert trimmed(["my na", "sty dog"], ["name"]) == (["my ", "nasty dog"], "")
    assert trimmed(["end na"], ["name"]) == (["end "], "na")  # the text ended: what was held back is text


def test_the_earliest_of_several_stop_strings_wins_and_nothing_follows():
    assert trimmed(["abcd", "ef"], ["cd", "b"]) == (["a", ""], "")


@given(text=st.text("abc", max_size=30), cuts=st.lists(st.integers(0, 30), max_size=6),
       stops=st.lists(st.text("abc", min_size=1, max_size=4), min_size=1, max_size=3))
def test_any_split_gives_the_text_before_the_first_stop(text, cuts, stops):
    """As the engine does, a text ends with the first piece after which it holds a stop string; the reply is
    that text up to the earliest stop string in it."""
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    expected = text
    for end in bounds[1:]:
        found = [text[:end].find(s) for s in stops if s in text[:end]]
        if found:
            expected = text[:min(found)]
            break
    out, rest = trimmed(pieces, stops)
    assert "".join(out) + rest == expected  # so every prefix sent is a prefix of it: no stop string leaks
