"""Corpora: files and built-in names, loaded into one `Corpus` type.

    corpus = load_corpus("chatterbot/english", history_turns=2)   # or "tinyshakespeare", "data/chat.jsonl"
    corpus.kind, len(corpus), corpus.examples[0]
    [b.name for b in list_builtins()]
"""

from __future__ import annotations

from pathlib import Path

from seqlab.data.corpora import (  # noqa: F401 - registers
    chatterbot,
    fortunes,
    labelled,
    shakespeare,
    shakespeare_dialogue,
    tinyshakespeare,
)
from seqlab.data.corpora.files import SUFFIXES, load_file
from seqlab.data.corpora.registry import (
    BuiltinInfo,
    is_builtin_name,
    list_builtins,
    load_builtin,
    register_builtin,
)
from seqlab.data.corpus import Corpus, Document, LabelledText, Pair
from seqlab.errors import DataError

__all__ = ["BuiltinInfo", "Corpus", "Document", "LabelledText", "Pair", "list_builtins", "load_corpus",
           "register_builtin"]


def load_corpus(name_or_path: str | Path, *, encoding: str = "utf-8", history_turns: int = 1) -> Corpus:
    """A built-in corpus by name, or a corpus file (.txt, .jsonl, .tsv)."""
    name = str(name_or_path)
    if not name.strip():
        raise DataError("no corpus given; name a built-in (see `seqlab data list`) or a file")
    path = Path(name).expanduser()
    if is_builtin_name(name) and not _looks_like_path(name):
        return load_builtin(name, history_turns=history_turns)
    if path.exists() or _looks_like_path(name):
        return load_file(path, encoding=encoding, history_turns=history_turns)
    return load_builtin(name, history_turns=history_turns)  # raises: unknown, with the known names


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(SUFFIXES) or name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
