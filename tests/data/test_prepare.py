"""prepare_data: streams, pairs, labelled data, train-only tokenizers, and an atomic cache."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import shared_data_file

from seqlab.config import DataConfig
from seqlab.data import prepare as prepare_module
from seqlab.data.prepare import SplitData, check_min_length, label_token, prepare_data
from seqlab.data.tokenizers import train_tokenizer
from seqlab.errors import DataError


def test_tinyshakespeare_char_is_nanogpts_stream(tmp_path):
    text = shared_data_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    data = prepare_data(DataConfig(corpus="tinyshakespeare", split="contiguous"), seed=1, cache_dir=tmp_path)
    # nanoGPT data/shakespeare_char/prepare.py: sorted chars, stoi, first 90% train
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    n = int(0.9 * len(text))
    train, val = data.splits["train"].ids, data.splits["val"].ids
    assert train.dtype == torch.long and train.dim() == 1
    assert torch.equal(train, torch.tensor([stoi[c] for c in text[:n]]) + 5)  # + the 5 specials
    assert torch.equal(val, torch.tensor([stoi[c] for c in text[n:]]) + 5)
    assert data.tokenizer.vocab_size == 65 + 5 and data.task == "lm"


def test_multi_document_stream_ends_each_with_eos(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(20)), encoding="utf-8")
    data = prepare_data(DataConfig(corpus=str(path), val_fraction=0.2), seed=3, cache_dir=tmp_path)
    tok = data.tokenizer
    for split in data.splits.values():
        ids = split.ids.tolist()
        assert ids[-1] == tok.eos_id and ids.count(tok.eos_id) == len(tok.decode(ids, skip_special=False).split("<eos>")) - 1
    assert data.splits["train"].ids.tolist().count(tok.eos_id) == 16


def test_random_split_of_one_document_uses_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line number {i}\n" for i in range(50)), encoding="utf-8")
    data = prepare_data(DataConfig(corpus=str(path), val_fraction=0.1, test_fraction=0.1), seed=0, cache_dir=tmp_path)
    tok = data.tokenizer
    lines = {s: tok.decode(sp.ids.tolist(), skip_special=False).split("<eos>")[:-1] for s, sp in data.splits.items()}
    assert sorted(map(len, lines.values())) == [5, 5, 40]
    assert sorted(sum(lines.values(), [])) == sorted(f"line number {i}" for i in range(50))


def test_tokenizer_is_trained_on_train_only(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a" * 90 + "b" * 10, encoding="utf-8")
    data = prepare_data(DataConfig(corpus=str(path), split="contiguous"), seed=0, cache_dir=tmp_path)
    assert data.tokenizer.token_to_id("b") is None
    assert data.splits["val"].ids.tolist() == [data.tokenizer.unk_id] * 10


def test_pairs_truncation_and_texts(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("".join(f"abcdefgh{i}\tstuvwxyz{i}\n" for i in range(10)), encoding="utf-8")
    cfg = DataConfig(corpus=str(path), task="pairs", max_source_len=3, max_target_len=4, val_fraction=0.2)
    data = prepare_data(cfg, seed=0, cache_dir=tmp_path)
    tok = data.tokenizer
    train = data.splits["train"]
    for (src, tgt), (s_text, t_text) in zip(train.pairs, train.texts, strict=True):
        assert tok.decode(src) == s_text[-3:] and tok.decode(tgt) == t_text[:4]  # sources keep their end
    assert len(train) == 8 and len(data.splits["val"]) == 2


def test_chatterbot_pairs_no_leak(tmp_path):
    data = prepare_data(DataConfig(corpus="chatterbot/english", task="pairs", tokenizer="word", test_fraction=0.1),
                        seed=5, cache_dir=tmp_path)
    texts = {side: set(split.texts) for side, split in data.splits.items()}
    assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"]
    assert sum(len(s) for s in data.splits.values()) == 2306


def test_labelled_adds_label_tokens(tmp_path):
    path = tmp_path / "l.jsonl"
    rows = [{"text": f"good {i}", "label": "pos"} if i % 2 else {"text": f"bad {i}", "label": "neg"} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = prepare_data(DataConfig(corpus=str(path), task="labelled"), seed=0, cache_dir=tmp_path)
    assert data.labels == ["neg", "pos"]
    tok = data.tokenizer
    assert tok.token_to_id(label_token("pos")) is not None
    label, ids = data.splits["train"].labelled[0]
    assert label in ("pos", "neg") and tok.decode(ids).startswith("good" if label == "pos" else "bad")
    again = prepare_data(DataConfig(corpus=str(path), task="labelled"), seed=0, cache_dir=tmp_path)
    assert again.cache_path == data.cache_path and again.tokenizer.token_to_id("<label:neg>") == tok.token_to_id("<label:neg>")
    assert again.splits["train"].labelled == data.splits["train"].labelled


def test_task_and_corpus_kind_must_agree(tmp_path):
    with pytest.raises(DataError, match="data.task pairs needs a pairs corpus"):
        prepare_data(DataConfig(corpus="tang300", task="pairs"), seed=0, cache_dir=tmp_path)
    with pytest.raises(DataError, match="data.task lm needs a text corpus"):
        prepare_data(DataConfig(corpus="chatterbot/english"), seed=0, cache_dir=tmp_path)


def test_cache_is_reused_and_keyed_by_config_and_file(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_text("hello world\n" * 50, encoding="utf-8")
    cfg = DataConfig(corpus=str(path), split="contiguous")
    first = prepare_data(cfg, seed=0, cache_dir=tmp_path / "cache")
    assert first.cache_path.is_dir() and first.cache_path.parent == tmp_path / "cache" / "prepared"

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(prepare_module, "train_tokenizer", no_training)
    second = prepare_data(cfg, seed=0, cache_dir=tmp_path / "cache")
    assert second.cache_path == first.cache_path
    assert torch.equal(second.splits["train"].ids, first.splits["train"].ids)
    monkeypatch.undo()
    path.write_text("hello there\n" * 50, encoding="utf-8")  # a changed file is a new key
    third = prepare_data(cfg, seed=0, cache_dir=tmp_path / "cache")
    assert third.cache_path != first.cache_path
    other = prepare_data(DataConfig(corpus=str(path), split="contiguous", val_fraction=0.2), 0, cache_dir=tmp_path / "cache")
    assert other.cache_path != third.cache_path


def test_given_tokenizer_is_used(tmp_path):
    tok = train_tokenizer("char", ["abc"])
    path = tmp_path / "c.txt"
    path.write_text("abcd" * 30, encoding="utf-8")
    data = prepare_data(DataConfig(corpus=str(path), split="contiguous"), 0, tokenizer=tok, cache_dir=tmp_path)
    assert data.tokenizer is tok and data.splits["train"].ids.tolist()[:4] == [5, 6, 7, tok.unk_id]


def test_interrupted_prepare_leaves_no_cache(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_text("hello world\n" * 50, encoding="utf-8")
    written = []

    def interrupted(folder, split):
        written.append(split.name)
        if len(written) == 2:
            raise KeyboardInterrupt
        return original(folder, split)

    original = prepare_module._write_split
    monkeypatch.setattr(prepare_module, "_write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(DataConfig(corpus=str(path), split="contiguous"), 0, cache_dir=tmp_path / "cache")
    assert written == ["train", "val"]
    assert list((tmp_path / "cache" / "prepared").iterdir()) == []  # no key directory, no temporary left


def test_check_min_length():
    check_min_length(SplitData("train", ids=torch.zeros(65, dtype=torch.long)), 64)
    with pytest.raises(DataError, match="the val split has 64 tokens, fewer than one training window of 65"):
        check_min_length(SplitData("val", ids=torch.zeros(64, dtype=torch.long)), 64)
    with pytest.raises(DataError, match="no examples"):
        check_min_length(SplitData("train", pairs=[]), 8)


def test_empty_split_is_an_error(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a", encoding="utf-8")  # int(0.9 * 1) = 0 characters for train
    with pytest.raises(DataError, match="too small: its train split is empty"):
        prepare_data(DataConfig(corpus=str(path), split="contiguous"), 0, cache_dir=tmp_path)


def test_damaged_cache_is_rebuilt(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("hello world\n" * 50, encoding="utf-8")
    cfg = DataConfig(corpus=str(path), split="contiguous")
    first = prepare_data(cfg, seed=0, cache_dir=tmp_path / "cache")
    (first.cache_path / "train.safetensors").write_bytes(b"garbage")
    again = prepare_data(cfg, seed=0, cache_dir=tmp_path / "cache")
    assert again.cache_path == first.cache_path
    assert torch.equal(again.splits["train"].ids, first.splits["train"].ids)
    (first.cache_path / "meta.json").unlink()
    assert torch.equal(prepare_data(cfg, seed=0, cache_dir=tmp_path / "cache").splits["val"].ids,
                       first.splits["val"].ids)


def test_pairs_truncation_is_counted_reported_and_cached(tmp_path):
    # char tokenizer: sources of 10 tokens; 96 targets of 3 tokens, 3 of 11 and one of 19
    path = tmp_path / "p.tsv"
    rows = [(f"abcdefgh{i}", "stuvwxyz" * (i < 3) + "stuvwxyz" * 2 * (i == 3) + "abc") for i in range(10)]
    rows += [("abcdefghij", "abc")] * 90
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    cfg = DataConfig(corpus=str(path), task="pairs", max_source_len=12, max_target_len=4, val_fraction=0.2)
    data = prepare_data(cfg, seed=0, cache_dir=tmp_path)
    t = data.truncation
    assert (t.pairs, t.sources_cut, t.targets_cut, t.target_p99, t.longest_target) == (100, 0, 4, 11, 19)
    assert max(len(tgt) for split in data.splits.values() for _, tgt in split.pairs) == 4
    assert data.truncation.messages() == [
        ("none", "0 of 100 sources (0.0%) were cut to their last data.max_source_len=12 tokens"),
        ("warning", "4 of 100 targets (4.0%) were cut to data.max_target_len=4 tokens; "
                    "raise it with --set data.max_target_len=11 (keeps 99% whole)")]
    assert prepare_data(cfg, seed=0, cache_dir=tmp_path).truncation == t  # from the cache
    one = prepare_module.count_truncation([1] * 200, [3] * 199 + [9], cfg)  # 0.5%: no warning, every target kept
    assert one.messages()[1] == ("cut", "1 of 200 targets (0.5%) were cut to data.max_target_len=4 tokens; "
                                        "raise it with --set data.max_target_len=9 (keeps all whole)")


def test_data_prepare_and_inspect_print_the_truncation(cli, tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("".join(f"hello there {i}\tgeneral kenobi you are a bold one {i}\n" for i in range(20)),
                    encoding="utf-8")
    line = "20 of 20 targets (100.0%) were cut to data.max_target_len=3 tokens; raise it with --set " \
           "data.max_target_len=8 (keeps all whole)"
    for command in (["data", "prepare", str(path), "--out", str(tmp_path / "run")], ["data", "inspect", str(path)]):
        result = cli(*command, "--set", "data.task=pairs", "--set", "data.tokenizer=word",
                     "--set", "data.max_target_len=3")
        assert result.exit_code == 0, result.stderr
        assert f"warning: {line}" in result.stderr.splitlines()
        assert "0 of 20 sources (0.0%) were cut to their last data.max_source_len=64 tokens" in result.stdout
        as_json = cli(*command, "--json", "--set", "data.task=pairs", "--set", "data.max_target_len=3")
        assert json.loads(as_json.stdout)["truncation"]["targets_cut"] == 20 and "warning: 20 of 20" in as_json.stderr
