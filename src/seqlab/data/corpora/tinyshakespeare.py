"""`tinyshakespeare`: char-rnn's 1,115,394 characters of Shakespeare, the nanoGPT benchmark.

Looked for as `$SEQLAB_DATA/tinyshakespeare.txt`, then in the user cache
(`$XDG_CACHE_HOME/seqlab/data`, default `~/.cache/seqlab/data`); else downloaded once from its
public URL into the cache, its sha256 checked before it is kept. One document: the raw stream.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

from seqlab.data.corpora.files import read_text_file
from seqlab.data.corpora.registry import register_builtin
from seqlab.data.corpus import Corpus, Document
from seqlab.errors import DataError
from seqlab.io import atomic_open

FILENAME = "tinyshakespeare.txt"
URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SOURCE = "github.com/karpathy/char-rnn data/tinyshakespeare/input.txt"
LICENSE = "text public domain; repository MIT"


def cache_dir() -> Path:
    """The user cache: `$XDG_CACHE_HOME/seqlab` (default `~/.cache/seqlab`)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqlab"


def find_or_download() -> Path:
    candidates = [Path(d) / FILENAME for d in os.environ.get("SEQLAB_DATA", "").split(os.pathsep) if d]
    candidates.append(cache_dir() / "data" / FILENAME)
    for path in candidates:
        if path.is_file():
            return path
    return download(URL, candidates[-1], SHA256)


def download(url: str, dest: Path, sha256: str, timeout: float = 60) -> Path:
    """Fetch `url` to `dest` atomically, keeping it only if its sha256 matches."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"{FILENAME} is not in $SEQLAB_DATA nor in {dest.parent}, and downloading {url} failed "
                        f"({getattr(e, 'reason', e)}); put the file in a directory named by SEQLAB_DATA") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(f"downloaded {url} has sha256 {digest}, expected {sha256}; not kept")
    with atomic_open(dest, "wb") as f:
        f.write(data)
    return dest


def load_tinyshakespeare() -> Corpus:
    path = find_or_download()
    return _read(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _read(path: str, mtime_ns: int) -> Corpus:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise DataError(f"{path} has sha256 {digest}, expected {SHA256} (a different or damaged file)")
    text = read_text_file(Path(path))
    return Corpus("tinyshakespeare", "text", documents=(Document(text, "tinyshakespeare"),), source=SOURCE,
                  license=LICENSE, files=(Path(path),))


register_builtin("tinyshakespeare", load_tinyshakespeare, "1,115,394 characters of Shakespeare (char-rnn, "
                 "nanoGPT's shakespeare_char), one stream", SOURCE, LICENSE,
                 "set SEQLAB_DATA to a directory holding tinyshakespeare.txt, or allow a one-time download")
