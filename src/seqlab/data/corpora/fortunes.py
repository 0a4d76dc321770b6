"""`tang300` and `song100`: Tang and Song poems from Debian's fortunes-zh, one poem per document.

The files are fortune databases (records separated by a line `%`) with ANSI colour codes around
a two-line header, in two formats:

    tang300:  《感遇・其一》 / 作者：张九龄
    song100:  题目:《塞上》 / 作者:柳开（９４６－９９９）

Colours are stripped; title, author (and the author's dates, when given) go to `meta`; the
document is the poem's body. Records are split exactly as `strfile` splits them (a line that is
exactly `%`), so the counts match the packaged `.dat` indexes: 313 and 95. (One song100 record,
梅尧臣's 《东溪》, also holds 《鲁山山行》: its separator line is "%    ", which fortune ignores too.)
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from seqlab.data.corpora.files import read_text_file
from seqlab.data.corpora.registry import register_builtin
from seqlab.data.corpus import Corpus, Document
from seqlab.errors import DataError

SEARCH_DIRS = [Path("/usr/share/games/fortunes"), Path("/usr/share/fortunes"), Path("/usr/local/share/games/fortunes")]
INSTALL = "apt-get install fortunes-zh"
SOURCE = "Debian package fortunes-zh (salsa.debian.org/chinese-team/fortunes-zh)"
LICENSE = "poems public domain; package GPL-3.0-or-later"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TITLE = re.compile(r"^(?:题目[:：])?\s*(?P<title>.+?)\s*$")
_AUTHOR = re.compile(r"^作者[:：]\s*(?P<author>[^（(]+?)\s*(?:[（(](?P<dates>[^）)]*)[）)])?\s*$")


def find_fortune_file(name: str) -> Path:
    for folder in SEARCH_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"the {name} corpus needs Debian's fortunes-zh, which is not installed: {INSTALL}")


def load_fortunes(name: str) -> Corpus:
    path = find_fortune_file(name)
    return Corpus(name, "text", documents=_parse(str(path), name), source=SOURCE, license=LICENSE, files=(path,))


@lru_cache(maxsize=4)
def _parse(path: str, name: str) -> tuple[Document, ...]:
    text = _ANSI.sub("", read_text_file(Path(path)))
    poems = []
    for record in re.split(r"^%$", text, flags=re.MULTILINE):  # strfile's delimiter: a line that is exactly "%"
        lines = [ln.strip() for ln in record.strip("\n").splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            continue
        if len(lines) < 3:
            raise DataError(f"{path}: poem {len(poems) + 1} has no body under its title and author")
        poems.append(_poem(path, name, len(poems), lines))
    return tuple(poems)


def _poem(path: str, name: str, index: int, lines: list[str]) -> Document:
    author = _AUTHOR.match(lines[1])
    if author is None:
        raise DataError(f"{path}: poem {index + 1}: expected an author line (作者：...), got {lines[1]!r}")
    title = _TITLE.match(lines[0])["title"].replace("《", "").replace("》", "")
    meta = {"title": title, "author": author["author"]}
    if author["dates"]:
        meta["dates"] = unicodedata.normalize("NFKC", author["dates"])
    return Document("\n".join(lines[2:]), f"{name}:{index}", meta)


register_builtin("tang300", lambda: load_fortunes("tang300"), "300 Tang poems (313 records), one poem per document",
                 SOURCE, LICENSE, INSTALL)
register_builtin("song100", lambda: load_fortunes("song100"), "100 Song poems (95 records), one poem per document",
                 SOURCE, LICENSE, INSTALL)
