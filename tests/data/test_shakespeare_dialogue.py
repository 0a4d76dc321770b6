"""shakespeare-dialogue: the speaker markup parser on hand-written text, and the built-in's pairs and splits."""

from __future__ import annotations

import pytest

from seqlab.config import DataConfig
from seqlab.data.corpora import load_corpus
from seqlab.data.corpora.shakespeare_dialogue import is_speaker, scenes
from seqlab.data.prepare import split_texts

PLAY = """THE TRAGEDY OF TESTING

PERSONS REPRESENTED.

Bernardo, an Officer.

SCENE. Elsinore.

ACT I.

Scene I. Elsinore. A platform before the Castle.

[Francisco at his post. Enter to him
Bernardo.]

Ber.
Who's there?

Fran.
Nay, answer me: stand,
and unfold yourself.

[Exit.]

Fran.
Long live the king!

KING HENRY.
He. [Aside] Softly.

Scene II. A room.

Hamlet.
Words, words.

PERICLES
See where she comes.

ACT II.

SCENE 1. A hall.

Ber.
Say.
"""


def test_scenes_parse_speakers_directions_and_headings():
    parsed = scenes(PLAY)
    assert [name for name, _ in parsed] == ["I:I", "I:II", "II:1"]
    assert parsed[0][1] == [("Ber", "Who's there?"),
                            ("Fran", "Nay, answer me: stand, and unfold yourself. Long live the king!"),
                            ("KING HENRY", "He. Softly.")]
    assert parsed[1][1] == [("Hamlet", "Words, words."), ("PERICLES", "See where she comes.")]
    assert parsed[2][1] == [("Ber", "Say.")]


@pytest.mark.parametrize("line,expected", [
    ("Ber.", True), ("Hamlet.", True), ("FIRST LORD.", True), ("KING HENRY.", True), ("PERICLES", True),
    ("Lady Macbeth.", True), ("Bernardo?", False), ("Who's there?", False), ("III.", False), ("Exit.", False),
    ("What poor an instrument", False), ("Enter Horatio.", False),
])
def test_is_speaker(line, expected):
    assert is_speaker(line) is expected


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("shakespeare-dialogue")


def test_builtin_has_tens_of_thousands_of_pairs_grouped_by_scene(corpus):
    assert corpus.kind == "pairs"
    assert 20_000 < len(corpus) < 60_000
    plays = {p.group.split(":")[0] for p in corpus.examples}
    assert "hamlet_gut" in plays and len(plays) >= 35
    assert not plays & {"sonnets_gut", "rape_of_lucrece_gut", "lovers_complaint_gut", "passionate_pilgrim_gut"}
    assert all(p.group.count(":") == 2 and p.source and p.target for p in corpus.examples)
    hamlet = [p for p in corpus.examples if p.group == "hamlet_gut:I:I"]
    assert (hamlet[0].source, hamlet[0].target) == ("Who's there?", "Nay, answer me: stand, and unfold yourself.")
    assert not any("[" in p.target or "]" in p.target for p in corpus.examples)


def test_history_turns_join_the_last_k_speeches_with_sep():
    corpus = load_corpus("shakespeare-dialogue", history_turns=3)
    hamlet = [p for p in corpus.examples if p.group == "hamlet_gut:I:I"]
    assert hamlet[2].source == "Who's there? <sep> Nay, answer me: stand, and unfold yourself. <sep> Long live the king!"
    assert hamlet[2].target == "Bernardo?"
    assert max(p.source.count("<sep>") for p in corpus.examples) == 2


def test_split_never_puts_a_scene_on_both_sides(corpus):
    cfg = DataConfig(corpus="shakespeare-dialogue", task="pairs", val_fraction=0.1, test_fraction=0.1)
    parts = split_texts(corpus, cfg, seed=3)
    groups = {side: {p.group for p in items} for side, items in parts.items()}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sum(map(len, parts.values())) == len(corpus)
    assert 0.05 < len(parts["test"]) / len(corpus) < 0.15
