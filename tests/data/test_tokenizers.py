"""Tokenizers: specials, round trips (hypothesis), OOV counting, JSON persistence, GPT-2 compatibility."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from seqlab.data.tokenizers import (
    SPECIALS,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    normalize_whitespace,
    train_tokenizer,
)
from seqlab.errors import DataError

TEXTS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
    "Héllo wörld — naïve café! 123 numbers_and_underscores.\tTabs   and  spaces.",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return train_tokenizer("bpe", TEXTS * 3, vocab_size=320)


def no_specials(text: str) -> bool:
    return not any(s in text for s in SPECIALS)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_specials_are_ids_0_to_4(kind):
    tok = train_tokenizer(kind, TEXTS, vocab_size=300)
    assert [tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.sep_id] == [0, 1, 2, 3, 4]
    assert [tok.id_to_token(i) for i in range(5)] == SPECIALS
    assert tok.kind == kind


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_special_strings_are_never_split_and_skipped_on_decode(kind):
    tok = train_tokenizer(kind, TEXTS, vocab_size=300)
    ids = tok.encode("Speak<sep>Speak", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids.count(tok.sep_id) == 1
    assert tok.decode(ids) == "SpeakSpeak"
    assert tok.decode(ids, skip_special=False) == "<bos>Speak<sep>Speak<eos>"


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_added_label_tokens(kind, tmp_path):
    tok = train_tokenizer(kind, TEXTS, vocab_size=300)
    before = tok.vocab_size
    tok.add_special_tokens(["<label:positive>", "<label:negative>"])
    tok.add_special_tokens(["<label:positive>"])  # adding twice changes nothing
    assert tok.vocab_size == before + 2
    pos = tok.token_to_id("<label:positive>")
    assert pos == before
    ids = tok.encode("<label:positive>Speak")
    assert ids[0] == pos and tok.decode(ids) == "Speak"
    tok.save(tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.token_to_id("<label:negative>") == before + 1
    assert again.encode("<label:negative>speak") == tok.encode("<label:negative>speak")


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_save_load_round_trip(kind, tmp_path):
    tok = train_tokenizer(kind, TEXTS, vocab_size=300)
    tok.save(tmp_path / "tokenizer.json")
    assert json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))["kind"] == kind
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    for text in TEXTS:
        assert again.encode(text) == tok.encode(text)
        assert again.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not a tokenizer JSON"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "kind.json").write_text('{"kind": "sentencepiece"}', encoding="utf-8")
    with pytest.raises(DataError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path / "kind.json")
    with pytest.raises(DataError, match="unknown tokenizer"):
        train_tokenizer("morse", TEXTS)


# ----------------------------------------------------------------------------- char


def test_char_vocab_min_freq_and_max_vocab():
    tok = CharTokenizer.train(["aaab", "ac"], min_freq=2)
    assert tok.tokens == SPECIALS + ["a"]
    tok = CharTokenizer.train(["aaabbc"], max_vocab=7)
    assert tok.tokens == SPECIALS + ["a", "b"]  # the two most frequent, then sorted by code point
    with pytest.raises(DataError, match="max_vocab"):
        CharTokenizer.train(["abc"], max_vocab=5)


def test_char_handles_chinese_and_counts_oov():
    tok = CharTokenizer.train([TEXTS[2]])
    assert tok.decode(tok.encode("明月光")) == "明月光"
    ids = tok.encode("明月x光y")
    assert ids[2] == tok.unk_id and ids[4] == tok.unk_id
    assert tok.decode(ids) == "明月<unk>光<unk>"  # <unk> stays visible
    assert tok.count_oov("明月x光y") == (2, 5)
    assert tok.count_oov("<sep>明") == (0, 2)


@FAST
@given(data=st.data())
def test_char_round_trip_on_its_vocabulary(data):
    tok = CharTokenizer.train(TEXTS)
    alphabet = [t for t in tok.tokens if t not in SPECIALS]
    text = data.draw(st.text(alphabet=st.sampled_from(alphabet), max_size=80))
    assume(no_specials(text))
    assert tok.decode(tok.encode(text)) == text
    assert tok.count_oov(text) == (0, len(text))


@FAST
@given(text=st.text(max_size=60), extra=st.text(min_size=1, max_size=5))
def test_char_oov_counted(text, extra):
    tok = CharTokenizer.train([text or "a"])
    unseen = "".join(c for c in extra if tok.token_to_id(c) is None)
    assume(unseen and no_specials(text + unseen))
    oov, total = tok.count_oov(text + unseen)
    assert (oov, total) == (len(unseen), len(text) + len(unseen))
    assert tok.encode(text + unseen)[len(text):] == [tok.unk_id] * len(unseen)


# ----------------------------------------------------------------------------- word


def test_word_whitespace_normalisation_is_documented_behaviour():
    assert normalize_whitespace("  a \t b  \r\n  c\rd  ") == "a b\nc\nd"
    tok = WordTokenizer.train(["Hello,   world!\n\n  How are you?  "])
    assert tok.lang == "en"
    assert tok.decode(tok.encode("Hello,   world!\n\n  How are you?  ")) == "Hello, world!\n\nHow are you?"
    assert [tok.id_to_token(i) for i in tok.encode("How are you?")] == ["How", " are", " you", "?"]


def test_word_keeps_the_space_after_a_special():
    tok = WordTokenizer.train(["hi there <sep> hello there"])
    assert tok.token_to_id(" hello") is not None and tok.token_to_id(" there") is not None
    ids = tok.encode("hi there <sep> hello there")
    assert ids.count(tok.sep_id) == 1 and tok.unk_id not in ids
    assert tok.decode(ids) == "hi there hello there"


def test_word_segments_chinese_with_jieba():
    tok = WordTokenizer.train(["我爱北京天安门，天安门上太阳升。"])
    assert tok.lang == "zh"  # detected: > 30% Han characters
    pieces = [tok.id_to_token(i) for i in tok.encode("我爱北京天安门")]
    assert pieces == ["我", "爱", "北京", "天安门"]
    assert WordTokenizer.train(["我爱北京"], lang="en").encode("我爱北京") == [5]  # no jieba: one \w+ run


def test_word_min_freq_max_vocab():
    tok = WordTokenizer.train(["a a a b b c"], min_freq=2)
    assert set(tok.tokens) == set(SPECIALS) | {" a", " b"}  # the first "a" has no leading space: seen once
    tok = WordTokenizer.train(["a a a b b c"], max_vocab=6)
    assert tok.tokens == SPECIALS + [" a"]
    assert tok.count_oov("a a c") == (2, 3)


@FAST
@given(text=st.text(max_size=80))
def test_word_round_trip_up_to_whitespace(text):
    assume(no_specials(text))
    tok = WordTokenizer.train([text])
    assert tok.decode(tok.encode(text)) == normalize_whitespace(text)
    assert tok.count_oov(text)[0] == 0


@FAST
@given(text=st.text(alphabet=st.sampled_from(list("床前明月光疑是地上霜举头望低思故乡，。！ \nab1")), max_size=60))
def test_word_round_trip_chinese_with_jieba(text):
    tok = WordTokenizer.train([text], lang="zh")
    assert tok.decode(tok.encode(text)) == normalize_whitespace(text)


# ----------------------------------------------------------------------------- bpe


@FAST
@given(text=st.text(max_size=120))
def test_bpe_round_trip_on_any_text(bpe, text):
    assume(no_specials(text))
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.count_oov(text) == (0, len(ids))


def test_bpe_vocab_size_and_merges(bpe):
    assert bpe.vocab_size == 320
    assert len(bpe.encode(TEXTS[0])) < len(TEXTS[0].encode("utf-8"))  # merges shorten the byte sequence
    with pytest.raises(DataError, match="vocab_size must be >= 261"):
        train_tokenizer("bpe", TEXTS, vocab_size=100)


def test_bpe_hf_files_round_trip_and_transformers_agree(bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    bpe.save_hf_files(tmp_path)
    assert {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    again = BPETokenizer.from_hf_files(tmp_path)
    for text in TEXTS + ["  leading spaces and trailing  ", "emoji 🙂 and <sep> special"]:
        ours = bpe.encode(text)
        assert hf(text, add_special_tokens=False)["input_ids"] == ours
        assert again.encode(text) == ours
        assert hf.decode(ours) == bpe.decode(ours, skip_special=False)
    assert again.roles == bpe.roles


def gpt2_style_folder(folder, texts):
    """A GPT-2-format folder (vocab.json + merges.txt, only `<|endoftext|>` special, last id)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return len(vocab) - 1


def test_bpe_from_gpt2_vocab_and_merges_keeps_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    eot = gpt2_style_folder(tmp_path, TEXTS * 3)
    tok = BPETokenizer.from_hf_files(tmp_path)
    assert tok.vocab_size == eot + 1
    assert tok.pad_id == tok.unk_id == tok.bos_id == tok.eos_id == tok.sep_id == eot
    reference = transformers.GPT2Tokenizer.from_pretrained(str(tmp_path))
    for text in TEXTS + ["a<|endoftext|>b"]:
        assert tok.encode(text) == reference.encode(text)
    ids = tok.encode("Speak, speak.", add_eos=True)
    assert ids[-1] == eot and tok.decode(ids) == "Speak, speak."
    out = tmp_path / "out"
    tok.save_hf_files(out)
    assert BPETokenizer.from_hf_files(out).encode(TEXTS[0]) == tok.encode(TEXTS[0])
    assert json.loads((out / "vocab.json").read_text(encoding="utf-8"))["<|endoftext|>"] == eot


def test_bpe_from_hf_files_errors(tmp_path):
    with pytest.raises(DataError, match="no tokenizer.json"):
        BPETokenizer.from_hf_files(tmp_path)
