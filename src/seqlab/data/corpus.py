"""What a corpus is: documents for language models, (source -> target) pairs, or labelled texts.

Every item carries a `group`, the unit splits never cut (a conversation, a play, a poem), and
free-form `meta` (title, author, category...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seqlab.errors import DataError

CorpusKind = Literal["text", "pairs", "labelled"]


def split_lines(text: str) -> list[str]:
    """`text`'s lines, ended by "\n" only ("\r\n" too, the "\r" dropped); a final "\n" opens no empty line.

    Unlike `str.splitlines`, U+2028/U+2029, U+0085, form feed and the other Unicode line breaks stay
    inside a line: they are valid in a JSON string, and a text line holding one is still one line.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


@dataclass(frozen=True)
class Document:
    text: str
    group: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    group: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    group: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus. `kind` says which of `documents` (text) or `examples` (pairs, labelled) is filled.

    `files` are the files it was read from: their sizes and modification times key the prepare cache.
    """

    name: str
    kind: CorpusKind
    documents: tuple[Document, ...] = ()
    examples: tuple[Pair | LabelledText, ...] = ()
    source: str = ""
    license: str = ""
    files: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        items = self.documents if self.kind == "text" else self.examples
        if not items:
            raise DataError(f"corpus {self.name!r} has no {'documents' if self.kind == 'text' else 'examples'}")

    @property
    def items(self) -> tuple[Document | Pair | LabelledText, ...]:
        return self.documents if self.kind == "text" else self.examples

    def __len__(self) -> int:
        return len(self.items)

    def texts(self) -> list[str]:
        """Every string in the corpus (documents; sources and targets; labelled texts)."""
        if self.kind == "text":
            return [d.text for d in self.documents]
        if self.kind == "pairs":
            return [s for p in self.examples for s in (p.source, p.target)]
        return [e.text for e in self.examples]

    def labelled_by(self, meta_key: str) -> Corpus:
        """A labelled corpus whose label is each item's `meta[meta_key]` (e.g. chatterbot's category).

        Pairs contribute their target (the reply) as the text.
        """
        examples = []
        for item in self.items:
            if meta_key not in item.meta:
                raise DataError(f"corpus {self.name!r}: an item has no {meta_key!r} to label it with")
            text = item.target if isinstance(item, Pair) else item.text
            examples.append(LabelledText(text, str(item.meta[meta_key]), item.group, item.meta))
        return Corpus(f"{self.name}:{meta_key}", "labelled", examples=tuple(examples), source=self.source,
                      license=self.license, files=self.files)
