"""Reading the user's input files (issue 15): line breaks, nesting, non-regular files, encodings, permissions."""

from __future__ import annotations

import json
import os
import time

import pytest

from seqlab.config import DataConfig, parse_overrides, read_config_file
from seqlab.data.corpora import encodings, files, load_corpus
from seqlab.data.corpus import split_lines
from seqlab.data.prepare import split_texts
from seqlab.data.stats import corpus_stats
from seqlab.errors import ConfigError, DataError
from seqlab.runs import MetricsLog

# Unicode line breaks that str.splitlines() honours but JSON strings, TSV fields and text lines may hold
BREAKS = "\u2028\u2029\u0085\x0c\x0b\x1c\x1d\x1e"


# ----------------------------------------------------------------------------- lines end at "\n" only


def test_split_lines():
    assert split_lines(f"a{BREAKS}b\r\nc\n\nd") == [f"a{BREAKS}b", "c", "", "d"]
    assert split_lines("one\n") == ["one"] and split_lines("") == []


def test_jsonl_strings_may_hold_unicode_line_breaks(tmp_path):
    rows = [{"text": f"a{ch}b"} for ch in BREAKS]
    path = tmp_path / "seps.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert [d.text for d in corpus.documents] == [r["text"] for r in rows]
    assert [d.group for d in corpus.documents] == [f"line {n}" for n in range(1, len(BREAKS) + 1)]


def test_tsv_fields_may_hold_unicode_line_breaks(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hi\u2028there\tyou\u0085too\r\nbye\tsee\x0cyou\n", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert [(p.source, p.target, p.group) for p in corpus.examples] == [
        ("hi\u2028there", "you\u0085too", "line 1"), ("bye", "see\x0cyou", "line 2")]


def test_txt_lines_keep_unicode_line_breaks(tmp_path):
    path = tmp_path / "c.txt"
    lines = [f"line {i}{BREAKS[i % len(BREAKS)]}still line {i}" for i in range(40)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(str(path))
    splits = split_texts(corpus, DataConfig(corpus=str(path)), seed=0)  # a random split: the lines are examples
    assert sorted(text for side in splits.values() for text in side) == sorted(lines)
    stats = corpus_stats(corpus, DataConfig(corpus=str(path)), seed=0)  # per line, in characters
    assert stats["length_unit"] == "line" and stats["length_percentiles"]["min"] == len("line 0 still line 0")


def test_metrics_log_keeps_rows_with_unicode_line_breaks(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1, "sample": "a\u2028b\u0085c"})
    log.append({"step": 2, "loss": 1.5})
    assert log.read() == [{"step": 1, "sample": "a\u2028b\u0085c"}, {"step": 2, "loss": 1.5}]


# ----------------------------------------------------------------------------- nesting


def test_deeply_nested_jsonl_row(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"deep.jsonl: line 2 is JSON nested too deeply"):
        load_corpus(str(path))


def test_deeply_nested_config_and_override(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("data: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"deep.yaml: YAML nested too deeply"):
        read_config_file(path)
    with pytest.raises(ConfigError, match=r"--set data.corpus: the value is nested too deeply"):
        parse_overrides(["data.corpus=" + "[" * 2_000 + "]" * 2_000])  # slow to scan: 2 s
    with pytest.raises(ConfigError, match=r"--set train.lr: the value is nested too deeply"):
        parse_overrides(["train.lr=" + "{a: " * 5_000 + "1" + "}" * 5_000])


# ----------------------------------------------------------------------------- regular files only


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "corpus.txt"
    os.mkfifo(fifo)  # no writer: reading it would block for ever
    with pytest.raises(DataError, match=r"corpus.txt' is a named pipe \(FIFO\), not a regular file"):
        load_corpus(str(fifo))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_character_device_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"'/dev/zero' is a character device, not a regular file"):
        load_corpus("/dev/zero")
    link = tmp_path / "zeros.txt"  # the suffix of a corpus, the endless data of /dev/zero
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"zeros.txt' is a character device"):
        load_corpus(str(link))


def test_permission_denied_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("hidden\n", encoding="utf-8")
    real_open = os.open

    def refuse(p, *args, **kwargs):  # tests run as root, whom chmod does not stop
        if os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", refuse)
    with pytest.raises(DataError, match=r"permission denied reading corpus file '.*secret.txt'; make it readable"):
        load_corpus(str(path))


# ----------------------------------------------------------------------------- encodings


POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
POEM_TRADITIONAL = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。\n"
FRENCH = "Le cœur a ses raisons que la raison ne connaît point. « Élève », déjà vu.\n"


@pytest.mark.parametrize(("text", "encoding"), [
    (POEM * 3, "gb18030"),
    (POEM_TRADITIONAL * 3, "big5"),
    (FRENCH * 3, "cp1252"),
    ("caf\u00e9 au lait\n", "cp1252"),  # too short to tell latin-1 from cp1252: the commoner one
], ids=["chinese-gb18030", "chinese-big5", "french-cp1252", "short-latin1"])
def test_undecodable_file_suggests_its_likely_encoding(tmp_path, text, encoding):
    path = tmp_path / "poems.txt"
    data = b"ascii first line\n" + text.encode(encoding)
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        load_corpus(str(path))
    bad = next(i for i, byte in enumerate(data) if byte > 127)
    assert str(info.value) == (
        f"{path}: not valid utf-8 at line 2, byte offset {bad} (byte 0x{data[bad]:02x}); "
        f"it looks like {encoding}: try --encoding {encoding} (or --set data.encoding={encoding})")
    assert load_corpus(str(path), encoding=encoding).documents[0].text == "ascii first line\n" + text


def test_a_wrong_encoding_other_than_utf8_is_corrected_too(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_bytes((POEM * 3).encode("gb18030"))
    with pytest.raises(DataError, match="not valid shift_jis at line 1.*it looks like gb18030: try --encoding gb18030"):
        load_corpus(str(path), encoding="shift_jis")


def test_damaged_utf8_is_not_called_another_encoding(tmp_path):
    path = tmp_path / "damaged.txt"
    head = (POEM * 20).encode()
    path.write_bytes(head + b"\xff\n" + (POEM * 5).encode())
    with pytest.raises(DataError, match=rf"not valid utf-8 at line 21, byte offset {len(head)} \(byte 0xff\); the "
                                        "rest of the file reads as utf-8, so it is probably damaged there"):
        load_corpus(str(path))


def test_utf16_with_a_byte_order_mark_is_named(tmp_path):
    path = tmp_path / "u16.txt"
    path.write_bytes("双语 text\n".encode("utf-16"))
    with pytest.raises(DataError, match="starts with a UTF-16 byte-order mark; try --encoding utf-16"):
        load_corpus(str(path))


def test_encoding_guess_reads_a_bounded_sample(tmp_path, monkeypatch):
    seen = []
    real = encodings._sample
    monkeypatch.setattr(encodings, "_sample", lambda data, offset: seen.append(len(s := real(data, offset))) or s)
    data = b"plain ascii text, line after line\n" * 300_000 + FRENCH.encode("cp1252") * 2  # ~10 MB
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"line 300001, .* it looks like cp1252"):
        load_corpus(str(path))
    assert time.perf_counter() - start < 10
    assert seen and max(seen) <= encodings.HEAD_BYTES + 2 * encodings.AROUND_BYTES + 2 * len(FRENCH)
