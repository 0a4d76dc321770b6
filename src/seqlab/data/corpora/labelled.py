"""Labelled built-ins (text, label) for label-conditioned generation, made from other built-ins.

    chatterbot-categories/<language>   each reply of chatterbot/<language>, labelled by its category
                                       (the YAML file's category: greetings, food, history, ...)
    tang-song                          the poems of tang300 (label "tang") and song100 (label "song")

Groups are the source corpus's (a conversation, a poem), so splits keep them whole.
"""

from __future__ import annotations

import dataclasses

from seqlab.data.corpora import chatterbot, fortunes
from seqlab.data.corpora.registry import register_builtin, register_family
from seqlab.data.corpus import Corpus, LabelledText


def load_chatterbot_categories(language: str, *, history_turns: int = 1) -> Corpus:
    """chatterbot/<language>'s replies, each labelled by its conversation's category."""
    labelled = chatterbot.load_chatterbot(language).labelled_by("category")
    return dataclasses.replace(labelled, name=f"chatterbot-categories/{language}")


def load_tang_song() -> Corpus:
    """The Tang poems labelled "tang", then the Song poems labelled "song"."""
    examples = []
    files = []
    for name, label in (("tang300", "tang"), ("song100", "song")):
        poems = fortunes.load_fortunes(name)
        examples += [LabelledText(d.text, label, d.group, d.meta) for d in poems.documents]
        files += poems.files
    return Corpus("tang-song", "labelled", examples=tuple(examples), source=fortunes.SOURCE, license=fortunes.LICENSE,
                  files=tuple(files))


register_family("chatterbot-categories", "language", chatterbot.languages, load_chatterbot_categories,
                "chatterbot/<language>'s replies labelled by category (text -> category)", chatterbot.SOURCE,
                chatterbot.LICENSE, chatterbot.INSTALL)
register_builtin("tang-song", load_tang_song, "Tang (tang300) and Song (song100) poems labelled tang / song",
                 fortunes.SOURCE, fortunes.LICENSE, fortunes.INSTALL)
