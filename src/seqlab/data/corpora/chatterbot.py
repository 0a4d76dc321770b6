"""`chatterbot/<language>`: the multilingual dialogue corpus of the `chatterbot-corpus` package.

Each language is a directory of YAML files, one per category; each conversation (a list of
utterances) yields its consecutive (utterance -> reply) pairs, or (last k turns -> reply) with
`history_turns` k. Conversations stored as a bare string have no reply and are skipped. The
group (kept on one side of a split) is `category-file:conversation-index`; the category is in
`meta["category"]`, so `corpus.labelled_by("category")` gives a labelled corpus.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from seqlab.config import yaml_error_message
from seqlab.data.corpora.dialogue import dialogue_pairs
from seqlab.data.corpora.files import read_text_file
from seqlab.data.corpora.registry import package_dir, register_family
from seqlab.data.corpus import Corpus, Pair
from seqlab.errors import DataError

INSTALL = "pip install chatterbot-corpus"
SOURCE = "github.com/gunthercox/chatterbot-corpus (the chatterbot-corpus package)"
LICENSE = "BSD-3-Clause"


def _data_dir() -> Path:
    return Path(package_dir("chatterbot_corpus", "the chatterbot corpora", INSTALL)) / "data"


def languages() -> list[str]:
    root = _data_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.yml")))


def load_chatterbot(language: str, *, history_turns: int = 1) -> Corpus:
    folder = _data_dir() / language
    files = tuple(sorted(folder.glob("*.yml")))
    pairs = _read_language(str(folder), history_turns)
    return Corpus(f"chatterbot/{language}", "pairs", examples=pairs, source=SOURCE, license=LICENSE, files=files)


@lru_cache(maxsize=8)
def _read_language(folder: str, history_turns: int) -> tuple[Pair, ...]:
    pairs: list[Pair] = []
    for path in sorted(Path(folder).glob("*.yml")):
        try:
            doc = yaml.safe_load(read_text_file(path)) or {}
        except yaml.YAMLError as e:
            raise DataError(yaml_error_message(path, e)) from None  # python tags named as such
        category = (doc.get("categories") or [path.stem])[0]
        for i, conversation in enumerate(doc.get("conversations") or []):
            if not isinstance(conversation, list):  # a bare string: no reply to learn
                continue
            turns = [str(t).strip() for t in conversation if t is not None]
            pairs += dialogue_pairs(turns, history_turns, f"{path.stem}:{i}",
                                    {"category": str(category), "file": path.name})
    return tuple(pairs)


register_family("chatterbot", "language", languages, load_chatterbot,
                "ChatterBot's dialogue corpus, one per language: (utterance -> reply) pairs", SOURCE, LICENSE,
                INSTALL)
