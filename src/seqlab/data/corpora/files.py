"""Corpora from files: `.txt`, JSONL (text/label, source/target, messages) and TSV pairs.

    .txt     one document (a language model's stream; a random split uses its lines as examples)
    .jsonl   {"text": ...} (+ "label")          -> text (labelled) examples, one per line
             {"source": ..., "target": ...}     -> pairs
             {"messages": [{"role", "content"}]} -> the (last k turns joined by " <sep> " -> reply) pairs
    .tsv     source<TAB>target                  -> pairs

An optional "group" key in a JSONL row names the unit splits keep together (default: the line).
Every way a file can be unusable is a `DataError` that names the file (and line, and byte).
"""

from __future__ import annotations

import codecs
import json
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Any

from seqlab.data.corpora.dialogue import dialogue_pairs
from seqlab.data.corpora.encodings import guess_encoding, looks_like_damaged_utf8
from seqlab.data.corpus import Corpus, Document, LabelledText, Pair, split_lines
from seqlab.errors import DataError
from seqlab.io import file_kind

SUFFIXES = (".txt", ".jsonl", ".tsv")
_BINARY_PROBE = 8192


def read_file_bytes(path: Path) -> bytes:
    """The bytes of the regular file `path`, or a DataError naming it: missing, a directory, a FIFO, device or
    socket (refused before reading, so a pipe or /dev/zero never blocks nor fills memory), or unreadable."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"no such file: {str(path)!r}") from None
    except OSError as e:
        raise DataError(f"corpus file {str(path)!r} cannot be read: {e.strerror}") from None
    _check_regular(path, mode)
    try:  # O_NONBLOCK: should the path have become a FIFO since the check, opening it does not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise DataError(f"permission denied reading corpus file {str(path)!r}; make it readable "
                        f"(e.g. chmod u+r {shlex.quote(str(path))}) or run as a user who may read it") from None
    except OSError as e:
        raise DataError(f"corpus file {str(path)!r} cannot be read: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        _check_regular(path, os.fstat(f.fileno()).st_mode)  # again: what was opened, should the path have changed
        return f.read()


def _check_regular(path: Path, mode: int) -> None:
    """Refuse a corpus path whose `st_mode` is not a regular file's, saying what it is instead."""
    if stat.S_ISDIR(mode):
        raise DataError(f"{str(path)!r} is a directory; expected a corpus file ({', '.join(SUFFIXES)})")
    if not stat.S_ISREG(mode):
        raise DataError(f"{str(path)!r} is a {file_kind(mode)}, not a regular file; seqlab reads a corpus file whole, "
                        "so save the data to a file first")


def read_text_file(path: Path, encoding: str = "utf-8") -> str:
    """The file's text, or a DataError for a missing path, a directory, a non-regular file,
    empty/blank/binary/undecodable data."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (try utf-8, gb18030, big5, cp1252, utf-16)") from None
    data = read_file_bytes(path)
    if not data:
        raise DataError(f"{path}: the file is empty")
    nul = data.find(b"\0", 0, _BINARY_PROBE)
    if nul >= 0 and not codec.name.startswith(("utf-16", "utf-32")):
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DataError(f"{path}: starts with a UTF-16 byte-order mark; try --encoding utf-16 "
                            "(or --set data.encoding=utf-16)")
        raise DataError(f"{path}: looks like binary data (a NUL byte at offset {nul}), not text")
    try:
        text = data.decode(codec.name)
    except UnicodeDecodeError as e:
        raise _undecodable(path, data, codec.name, e) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: the file holds only whitespace")
    return text


def _undecodable(path: Path, data: bytes, encoding: str, e: UnicodeDecodeError) -> DataError:
    """The error for bytes `encoding` cannot decode, suggesting the encoding the file looks like."""
    line = data.count(b"\n", 0, e.start) + 1
    where = f"{path}: not valid {encoding} at line {line}, byte offset {e.start} (byte 0x{data[e.start]:02x})"
    if encoding.startswith("utf-8") and looks_like_damaged_utf8(data, e.start):
        return DataError(f"{where}; the rest of the file reads as utf-8, so it is probably damaged there: "
                         "fix or delete the bytes at that offset")
    guess = guess_encoding(data, e.start, encoding)
    if guess is None:
        return DataError(f"{where}; pass the file's encoding with --encoding NAME (or --set data.encoding=NAME), "
                         "e.g. gb18030, big5, shift_jis or cp1252")
    return DataError(f"{where}; it looks like {guess}: try --encoding {guess} (or --set data.encoding={guess})")


def load_file(path: Path, *, encoding: str = "utf-8", history_turns: int = 1) -> Corpus:
    suffix = path.suffix.lower()
    if path.is_file() and suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported corpus file type {suffix or '(none)'!r}; use {', '.join(SUFFIXES)}")
    text = read_text_file(path, encoding)
    common = {"name": str(path), "source": str(path), "files": (path.resolve(),)}
    if suffix == ".txt":
        return Corpus(kind="text", documents=(Document(text, path.name, {"path": str(path)}),), **common)
    if suffix == ".tsv":
        return Corpus(kind="pairs", examples=tuple(_tsv_pairs(path, text)), **common)
    kind, items = _jsonl_items(path, text, history_turns)
    return Corpus(kind=kind, documents=tuple(items) if kind == "text" else (),
                  examples=() if kind == "text" else tuple(items), **common)


def _tsv_pairs(path: Path, text: str) -> list[Pair]:
    pairs = []
    for n, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{path}: line {n} has {len(fields)} tab-separated fields; expected 2 (source<TAB>target)")
        pairs.append(Pair(fields[0].strip(), fields[1].strip(), f"line {n}"))
    return pairs


def _jsonl_items(path: Path, text: str, history_turns: int) -> tuple[str, list[Any]]:
    kind, items = None, []
    for n, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n} is not valid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise DataError(f"{path}: line {n} is JSON nested too deeply to read (over ~{sys.getrecursionlimit()} "
                            'levels of [ ] or { }); a row is a flat object such as {"text": ...}') from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n} is a JSON {type(row).__name__}; expected an object such as "
                            '{"text": ...}, {"source": ..., "target": ...} or {"messages": [...]}')
        row_kind = _row_kind(path, n, row)
        if kind is None:
            kind = row_kind
        elif row_kind != kind:
            raise DataError(f"{path}: line {n} is a {row_kind} row but the first rows are {kind} rows")
        group = str(row.get("group", f"line {n}"))
        if kind == "text":
            items.append(Document(_string(path, n, row, "text"), group))
        elif kind == "labelled":
            items.append(LabelledText(_string(path, n, row, "text"), _label(path, n, row), group))
        elif kind == "pairs":
            items.append(Pair(_string(path, n, row, "source"), _string(path, n, row, "target"), group))
        else:
            items.extend(dialogue_pairs(_turns(path, n, row), history_turns, group, {"line": n}))
    if kind is None:
        raise DataError(f"{path}: no JSON rows")
    if not items:
        raise DataError(f"{path}: no conversation has a reply to learn from")
    return ("pairs" if kind == "messages" else kind), items


def _row_kind(path: Path, n: int, row: dict[str, Any]) -> str:
    if "messages" in row:
        return "messages"
    if "source" in row or "target" in row:
        missing = [k for k in ("source", "target") if k not in row]
        if missing:
            raise DataError(f"{path}: line {n} lacks the key {missing[0]!r} (pair rows need \"source\" and \"target\")")
        return "pairs"
    if "text" in row:
        return "labelled" if "label" in row else "text"
    raise DataError(f"{path}: line {n} lacks the keys of any row kind; has {sorted(row)}, expected \"text\" "
                    '(+ "label"), "source" + "target", or "messages"')


def _string(path: Path, n: int, row: dict[str, Any], key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{path}: line {n}: {key!r} must be a string, got {type(value).__name__}")
    return value


def _label(path: Path, n: int, row: dict[str, Any]) -> str:
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise DataError(f"{path}: line {n}: 'label' must be a string or an integer, got {json.dumps(label)}")
    return str(label)


def _turns(path: Path, n: int, row: dict[str, Any]) -> list[tuple[str, str]]:
    messages = row["messages"]
    if not isinstance(messages, list):
        raise DataError(f"{path}: line {n}: 'messages' must be a list of {{\"role\", \"content\"}} objects")
    turns = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{path}: line {n}: every message needs the keys 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise DataError(f"{path}: line {n}: a message's 'content' must be a string")
        turns.append((str(m["role"]), m["content"]))
    return turns
