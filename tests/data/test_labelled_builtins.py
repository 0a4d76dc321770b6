"""Labelled built-ins: chatterbot-categories/<language> (reply -> category) and tang-song (poem -> tang|song)."""

from __future__ import annotations

from collections import Counter

from conftest import assert_one_line_error

from seqlab.config import DataConfig
from seqlab.data.corpora import list_builtins, load_corpus
from seqlab.data.prepare import label_token, prepare_data


def test_tang_song_labels_every_poem_by_dynasty():
    corpus = load_corpus("tang-song")
    assert corpus.kind == "labelled"
    assert Counter(e.label for e in corpus.examples) == {"tang": 313, "song": 95}
    tang = load_corpus("tang300").documents
    assert [e.text for e in corpus.examples[:313]] == [d.text for d in tang]
    assert corpus.examples[0].meta["author"] == tang[0].meta["author"]


def test_chatterbot_categories_label_the_replies_by_category():
    pairs = load_corpus("chatterbot/english")
    corpus = load_corpus("chatterbot-categories/english")
    assert corpus.name == "chatterbot-categories/english" and corpus.kind == "labelled"
    assert [e.text for e in corpus.examples] == [p.target for p in pairs.examples]
    assert [e.label for e in corpus.examples] == [p.meta["category"] for p in pairs.examples]
    assert {"greetings", "food", "history"} <= {e.label for e in corpus.examples}
    assert load_corpus("chatterbot-categories/chinese").examples[0].label


def test_listed_with_their_members():
    names = {b.name for b in list_builtins()}
    assert {"tang-song", "chatterbot-categories/english", "shakespeare-dialogue"} <= names


def test_prepare_labelled_adds_label_tokens_and_a_label_prefixed_stream(tmp_path):
    cfg = DataConfig(corpus="tang-song", task="labelled", tokenizer="char", val_fraction=0.1)
    data = prepare_data(cfg, seed=0, cache_dir=tmp_path)
    tok = data.tokenizer
    assert data.labels == ["song", "tang"]
    ids = {lb: tok.token_to_id(label_token(lb)) for lb in data.labels}
    assert None not in ids.values()
    train = data.splits["train"]
    label, text_ids = train.labelled[0]
    assert train.ids[:len(text_ids) + 2].tolist() == [ids[label], *text_ids, tok.eos_id]
    assert int((train.ids == tok.eos_id).sum()) == len(train.labelled)
    again = prepare_data(cfg, seed=0, cache_dir=tmp_path)  # from the cache
    assert again.cache_path == data.cache_path
    assert again.splits["train"].ids.tolist() == train.ids.tolist()
    assert again.splits["train"].labelled == train.labelled


def test_unknown_member_is_one_line_error(cli):
    result = cli("data", "inspect", "chatterbot-categories/klingon")
    assert_one_line_error(result)
    assert "chatterbot-categories/english" in result.stderr
