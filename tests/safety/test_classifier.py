"""The classifier's words (alt-profanity-check, scored one word at a time) and the filter's measured false
positives on ordinary English and Chinese text: the figures seqlab.safety.classifier quotes."""

from __future__ import annotations

import pytest

from seqlab.safety import ReplyPolicy
from seqlab.safety.classifier import THRESHOLD, classifier_words

# chat-style lines a filter must catch; the last five hold no word of seqlab's English list
PROFANE = ["fuck off", "what the fuck are you doing", "this is bullshit", "you are a piece of shit",
           "shut up bitch", "go to hell you bastard", "you stupid asshole", "kiss my ass",
           "you are such a dickhead", "son of a bitch", "motherfucker", "that was fucking great", "holy shit",
           "F U C K you", "sh1t happens", "what a b1tch", "fuuuck this", "piss off mate", "stop being a twat",
           "he is a wanker", "what a jackass", "that shitty movie",
           "你他妈的闭嘴", "傻逼", "操你妈", "你个王八蛋", "草泥马",
           "you moron", "what an imbecile", "shut up you pathetic loser", "this is crap",
           "you retarded idiot"]
ONLY_THE_CLASSIFIER = 5


def test_the_classifier_scores_a_word_alone_as_the_filter_reads_it():
    from profanity_check import predict_prob

    flagged = set(classifier_words())
    for word in ("motherfucker", "shitty", "imbecile", "moron", "retarded"):
        assert word in flagged and predict_prob([word])[0] >= THRESHOLD
    for word in ("hell", "kill", "die", "gay", "fool", "hate", "sex", "coward", "shut"):  # scored under 0.995
        assert word not in flagged and predict_prob([word])[0] < THRESHOLD
    assert all(len(w) >= 3 and w.isalpha() for w in flagged)
    assert 40 <= len(flagged) <= 70


@pytest.mark.parametrize("mode", ["words", "profanity"])
def test_profane_lines_are_caught(mode):
    words = ReplyPolicy(mode).words
    missed = [line for line in PROFANE if not words.find(line)]
    assert missed == ([] if mode == "profanity" else PROFANE[-ONLY_THE_CLASSIFIER:])


def flagged_share(mode: str, lines: list[str]) -> float:
    words = ReplyPolicy(mode).words
    return sum(1 for line in lines if words.find(line)) / len(lines)


@pytest.mark.shared_data("tinyshakespeare.txt")
@pytest.mark.parametrize(("mode", "at_most"), [("words", 0.0015), ("profanity", 0.0025)])
def test_false_positives_on_shakespeare(mode, at_most):
    """Measured (2026-12): words 29 of 24,015 lines (0.12%: bastard, ass, dick, whore); profanity 47 (0.20%:
    and cock, suck, stupid). Each is an animal, a bird or a child in the play, but the word it is."""
    from conftest import shared_data_file

    text = shared_data_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.endswith(":")]  # speakers' names are not lines
    assert len(lines) == 24015
    assert flagged_share(mode, lines) <= at_most


@pytest.mark.parametrize(("mode", "at_most"), [("words", 0.0015), ("profanity", 0.003)])
def test_false_positives_on_chatbot_replies(mode, at_most):
    """Measured (2026-12) on chatterbot's English utterances (1,874): words 2 (0.11%: "Moby Dick", "Philip K.
    Dick"); profanity 5 (0.27%: and "Are you stupid", "Robots are stupid", "who wrote The Idiot"). Chinese
    (878): none."""
    from seqlab.data.corpora.chatterbot import load_chatterbot

    def utterances(language: str) -> list[str]:
        pairs = load_chatterbot(language).examples
        return sorted({p.source for p in pairs} | {p.target for p in pairs})

    assert flagged_share(mode, utterances("english")) <= at_most
    assert flagged_share(mode, utterances("chinese")) == 0.0
