"""Ban lists as text: every spelling of a banned word is blocked under the char, word and BPE tokenizers,
longer words are not, and a model trained to say the words never does in thousands of sampled replies."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from conftest import assert_one_line_error
from tiny_runs import LM, config_for, make_run, write_text_corpus

from seqlab.data.tokenizers import WordTokenizer, train_tokenizer
from seqlab.decode import generate
from seqlab.decode.banned_words import (
    BND,
    BannedWords,
    compile_ban_list,
    normalize,
    read_word_list,
    symbols,
    token_bytes,
)
from seqlab.errors import SeqlabError
from seqlab.models.rnn_lm import RNNLanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = ("char", "word", "bpe")
WORDS = ["damn", "该死"]
TEXTS = ["damn", "Damn it", "oh DAMN!", "oh damn it, damned rain", "the damnation of the class",
         "my assistant has class", "a classy ass", "go to the shop", "go top", "真该死的天气", "该死", "该走了", "死了"]


@pytest.fixture(scope="module")
def tokenizers():
    return {kind: train_tokenizer(kind, TEXTS, vocab_size=300) for kind in KINDS}


def banned_next(tok, words, reply: list[int], max_new_tokens: int = 50) -> set[int]:
    """The token ids the processor bans after the reply `reply` (prompt: BOS)."""
    ban = compile_ban_list(words, tok, [tok.eos_id])
    processor = BannedWords(ban, prompt_length=1, max_new_tokens=max_new_tokens)
    scores = torch.zeros(1, tok.vocab_size)
    out = processor(torch.tensor([[tok.bos_id, *reply]]), scores)
    return set(torch.isinf(out)[0].nonzero().flatten().tolist())


def can_generate(tok, words, text: str, then_eos: bool = False, cap: bool = True) -> bool:
    """Whether no token of `text` (then EOS) is banned where it comes; `cap`: the reply ends right there."""
    ids = tok.encode(text) + ([tok.eos_id] if then_eos else [])
    max_new_tokens = len(ids) if cap else len(ids) + 10
    return all(ids[k] not in banned_next(tok, words, ids[:k], max_new_tokens) for k in range(len(ids)))


def names(tok, ids) -> set[str]:
    return {tok.id_to_token(i) for i in ids}


def test_symbols_mark_a_boundary_around_every_non_word_byte():
    assert symbols(b"go to.") == f"go{BND} {BND}to{BND}.{BND}"
    assert symbols(b"a\n!") == f"a{BND} {BND}!{BND}"  # whitespace reads as a space
    assert symbols("该".encode()) == BND + BND.join(chr(b) for b in "该".encode()) + BND


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", ["damn", "Damn it", "oh DAMN!", "oh damn it", "真该死的天气", "该死"])
def test_every_spelling_of_a_banned_word_is_blocked(tokenizers, kind, text):
    tok = tokenizers[kind]
    assert tok.decode(tok.encode(text)) == text  # the tokenizer spells it
    assert not can_generate(tok, WORDS, text)
    assert not can_generate(tok, WORDS, text, then_eos=True, cap=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", ["damned rain", "the damnation", "my assistant has class", "a classy", "该走了"])
def test_longer_words_are_not_blocked(tokenizers, kind, text):
    assert can_generate(tokenizers[kind], ["damn", "ass", "该死"], text, then_eos=True)


@pytest.mark.parametrize("kind", KINDS)
def test_a_phrase_is_blocked_across_tokens_and_only_as_a_whole(tokenizers, kind):
    tok = tokenizers[kind]
    assert not can_generate(tok, ["go to"], "go to the shop")
    assert can_generate(tok, ["go to"], "go top", then_eos=True)


def test_char_tokens_ban_what_ends_the_word_not_its_last_letter(tokenizers):
    tok = tokenizers["char"]
    ids = tok.encode("oh dam")
    assert tok.encode("n")[0] not in banned_next(tok, WORDS, ids)  # "damned" may follow
    assert tok.encode("n")[0] in banned_next(tok, WORDS, ids, max_new_tokens=len(ids) + 1)  # the reply ends after it
    after = banned_next(tok, WORDS, tok.encode("oh damn"))
    assert {" ", "!", ",", "<eos>"} <= names(tok, after)
    assert not names(tok, after) & {"e", "a", "t"}
    assert names(tok, banned_next(tok, WORDS, tok.encode("真该"))) == {"死"}  # Chinese: a substring


def test_the_word_tokenizer_bans_the_word_token_itself():
    """A word token ends a word (the tokenizer's words are maximal runs), so " damn" is banned, not what follows."""
    tok = WordTokenizer(["<pad>", "<unk>", "<bos>", "<eos>", "<sep>", " damn", "damn", " Damn", "DAMN", " damned",
                         " ｄａｍｎ", " oh", "!", "oh", "\n", " 真该死的"])
    spaced = {" damn", " Damn", " ｄａｍｎ", " 真该死的"}
    assert names(tok, banned_next(tok, WORDS, [])) == spaced | {"damn", "DAMN"}  # at the reply's start
    assert names(tok, banned_next(tok, WORDS, tok.encode("oh"))) == spaced  # "ohdamn" is another word


def test_bpe_bans_a_chinese_word_split_inside_its_characters():
    tok = train_tokenizer("bpe", TEXTS, vocab_size=270)  # few merges: characters stay in pieces
    ids = tok.encode("该死")
    texts = token_bytes(tok)
    assert any(not _valid_utf8(texts[i]) for i in ids)  # the vocabulary splits these characters' bytes
    assert not can_generate(tok, WORDS, "该死")
    assert can_generate(tok, WORDS, "该走了死了", then_eos=True)


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_tokens_without_text_do_not_hide_a_word(tokenizers):
    tok = tokenizers["char"]
    ban = compile_ban_list(["damn"], tok, [tok.eos_id])
    reply = tok.encode("oh dam") + [tok.sep_id] * (ban.window + 2) + tok.encode("n")
    assert tok.encode(" ")[0] in banned_next(tok, ["damn"], reply)


def test_states_follow_rows_whatever_their_order(tokenizers):
    """Step by step with rows shuffled (as beam search reorders them), each row's bans are those of its text."""
    tok = tokenizers["char"]
    ban = compile_ban_list(["damn", "ass", "go to"], tok, [tok.eos_id])
    processor = BannedWords(ban, prompt_length=2, max_new_tokens=100)
    alphabet = tok.encode("damn ass go to.")
    rng = random.Random(0)
    rows = [[tok.bos_id, tok.bos_id] for _ in range(16)]
    for _ in range(3 * ban.window):
        rng.shuffle(rows)
        for row in rows:
            row.append(rng.choice(alphabet))
        ids = torch.tensor(rows)
        scores = torch.zeros(len(rows), tok.vocab_size)
        fresh = BannedWords(ban, prompt_length=2, max_new_tokens=100)
        assert torch.equal(processor(ids, scores), fresh(ids, scores))


def test_the_processor_does_not_modify_its_input(tokenizers):
    tok = tokenizers["char"]
    ids = torch.tensor([[tok.bos_id, *tok.encode("oh damn")]])
    scores = torch.randn(1, tok.vocab_size)
    before = scores.clone()
    out = BannedWords(compile_ban_list(WORDS, tok), 1, 20)(ids, scores)
    assert torch.equal(scores, before) and torch.isinf(out).any()


def test_the_ban_list_is_compiled_once_per_tokenizer(tokenizers):
    tok = tokenizers["char"]
    assert compile_ban_list(["damn"], tok) is compile_ban_list(["damn"], tok)
    assert compile_ban_list(["damn"], tok) is not compile_ban_list(["damn"], train_tokenizer("char", TEXTS))


@pytest.mark.parametrize("entries", [[" "], ["damn", "\u3000"], []])
def test_empty_entries_are_refused(tokenizers, entries):
    with pytest.raises(SeqlabError):
        compile_ban_list(entries, tokenizers["char"])


def test_generate_needs_the_tokenizer(tokenizers):
    model = RNNLanguageModel(tokenizers["char"].vocab_size, n_layer=1, n_embd=8, hidden_size=8)
    with pytest.raises(SeqlabError, match="banned_words need the tokenizer"):
        generate(model, torch.tensor([[1]]), banned_words=["damn"])


# ---------------------------------------------------------------- a model trained to say the words

ENGLISH = ["damn it all", "oh damn", "Damn the rain", "well, damn!", "damn, damn", "what a damn day",
           "the rain is cold", "we had class", "DAMN"]
CHINESE = ["该死的天气", "真该死", "天气很好"]
REPLIES = 2000


def trained_model(tok, lines: list[str]) -> RNNLanguageModel:
    """A one-layer LSTM that has learnt `lines` (BOS line EOS) nearly by heart: ~1 s on one CPU thread."""
    data = [tok.encode(line, add_bos=True, add_eos=True) for line in lines]
    x = torch.full((len(data), max(map(len, data))), tok.pad_id)
    for i, row in enumerate(data):
        x[i, :len(row)] = torch.tensor(row)
    targets = x[:, 1:].masked_fill(x[:, 1:] == tok.pad_id, -100)
    torch.manual_seed(0)
    model = RNNLanguageModel(tok.vocab_size, n_layer=1, n_embd=32, hidden_size=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(x[:, :-1], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def holds(text: str, word: str) -> bool:
    """Whether `text` holds `word` as the ban list reads it: case-folded, as a whole word where it starts or
    ends with a letter."""
    before = r"(?<![A-Za-z0-9_])" if re.match(r"\w", word, re.ASCII) else ""
    after = r"(?![A-Za-z0-9_])" if re.search(r"\w$", word, re.ASCII) else ""
    return re.search(before + re.escape(normalize(word)) + after, normalize(text)) is not None


@pytest.fixture(scope="module", params=KINDS)
def trained(request):
    tok = train_tokenizer(request.param, ENGLISH + CHINESE, vocab_size=300)
    return tok, trained_model(tok, (ENGLISH + CHINESE) * 4)


def sample_replies(model, tok, **options) -> list[str]:
    out = generate(model, torch.tensor([[tok.bos_id]]), tokenizer=tok, do_sample=True, top_k=0,
                   num_return_sequences=REPLIES, max_new_tokens=24, eos_token_id=tok.eos_id,
                   pad_token_id=tok.pad_id, seed=0, **options)
    return [tok.decode(row[1:]) for row in out.sequences.tolist()]


def test_a_model_trained_to_say_the_words_never_does_when_they_are_banned(trained):
    tok, model = trained
    plain = sample_replies(model, tok)
    for word in WORDS:
        assert sum(holds(text, word) for text in plain) > REPLIES // 10, (word, plain[:20])
    banned = sample_replies(model, tok, banned_words=WORDS)
    assert len(banned) == REPLIES
    offending = [text for text in banned if any(holds(text, w) for w in WORDS)]
    assert offending == []


def test_beam_search_respects_the_ban(trained):
    tok, model = trained
    prompts = torch.tensor([[tok.bos_id]])
    kw = dict(tokenizer=tok, num_beams=4, num_return_sequences=4, max_new_tokens=16, eos_token_id=tok.eos_id,
              pad_token_id=tok.pad_id)
    plain = [tok.decode(r[1:]) for r in generate(model, prompts, **kw).sequences.tolist()]
    assert any(holds(t, w) for t in plain for w in WORDS)
    banned = [tok.decode(r[1:]) for r in generate(model, prompts, banned_words=WORDS, **kw).sequences.tolist()]
    assert not any(holds(t, w) for t in banned for w in WORDS)


# ---------------------------------------------------------------- --ban-words FILE

@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ban-run")
    config = config_for(write_text_corpus(root / "corpus.txt"), LM, "lm", tokenizer="char")
    config["decode"]["banned_words"] = ["king"]
    return make_run(root / "run", config)


def test_read_word_list_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeff# swear words\ndamn\n\n  go to  \r\n该死\n".encode())
    assert read_word_list(path) == ["damn", "go to", "该死"]


def test_generate_with_a_ban_list_file(cli, lm_run, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# no\nthe\nis\n", encoding="utf-8")
    r = cli("generate", lm_run, "--prompt", "x", "--ban-words", words, "--do-sample", "--num-return-sequences", "8",
            "--max-new-tokens", "20", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["options"]["banned_words"] == ["king", "the", "is"]
    for generation in out["results"][0]["generations"]:
        assert not any(holds(generation["text"], w) for w in ("king", "the", "is"))


def test_chat_with_a_ban_list_file(cli, lm_run, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("the\n", encoding="utf-8")
    r = cli("chat", lm_run, "--ban-words", words, "--device", "cpu", stdin="hello\n")
    assert r.exit_code == 0, r.stderr
    assert not holds(r.stdout, "the")


@pytest.mark.parametrize("content", [b"", b"# only a comment\n\n", b"\x00\x01binary", b"\xff\xfe bad utf-8",
                                     None, "directory"])
@pytest.mark.parametrize("command", ["generate", "chat"])
def test_a_bad_ban_list_file_is_one_line_and_exit_2(cli, lm_run, tmp_path, content, command):
    path = tmp_path / "words.txt"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    args = ["--prompt", "x"] if command == "generate" else []
    r = cli(command, lm_run, *args, "--ban-words", path, stdin="hello\n")
    assert_one_line_error(r)
    assert str(path) in r.stderr
