"""Streaming: pieces never split a character, concatenate to the decoded text, and stop at stop strings."""

from __future__ import annotations

import pytest
import torch
from decode_fakes import ScriptLM

from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer
from seqlab.decode import IncrementalDetokenizer, generate, stream

TEXT = "héllo, 世界 🙂 ok"


@pytest.fixture(scope="module")
def byte_bpe():
    # a tiny vocabulary: multi-byte characters stay split into single-byte tokens
    return BPETokenizer.train(["hello ok, a b"], vocab_size=270)


def test_byte_tokens_split_characters(byte_bpe):
    ids = byte_bpe.encode(TEXT)
    assert any("\ufffd" in byte_bpe.decode([i]) for i in ids), "the test needs partial-character tokens"


def test_incremental_detokenizer_never_splits_a_character(byte_bpe):
    ids = byte_bpe.encode(TEXT)
    detok = IncrementalDetokenizer(byte_bpe)
    pieces = [detok.push([i]) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == TEXT
    assert sum(bool(p) for p in pieces) > 5  # it really streams


def test_stream_bpe_model_output(byte_bpe):
    script = byte_bpe.encode(TEXT)
    model = ScriptLM(script, byte_bpe.vocab_size, after=byte_bpe.eos_id)
    pieces = list(stream(model, byte_bpe, "hello", max_new_tokens=len(script) + 5, eos_token_id=byte_bpe.eos_id))
    assert all(p and "\ufffd" not in p for p in pieces)
    assert "".join(pieces) == TEXT


def test_stream_keeps_word_separators():
    tok = WordTokenizer.train(["the cat sat on the mat ."])
    prompt, script = tok.encode("the"), tok.encode("the cat sat on the mat")[1:]
    model = ScriptLM(script, tok.vocab_size, after=tok.eos_id)
    pieces = list(stream(model, tok, "the", max_new_tokens=10, eos_token_id=tok.eos_id))
    assert tok.decode(prompt) + "".join(pieces) == tok.decode(prompt + script) == "the cat sat on the mat"


def test_stream_stops_after_a_stop_string():
    tok = CharTokenizer.train(["abcdefgh\n"])
    model = ScriptLM(tok.encode("abc\ndef\ngh"), tok.vocab_size, after=tok.eos_id)
    pieces = list(stream(model, tok, "a", max_new_tokens=20, stop_strings=["\nd", "xyz"]))
    assert "".join(pieces) == "abc\nd"
    out = generate(model, torch.tensor([tok.encode("a")]), max_new_tokens=20, stop_strings="\nd", tokenizer=tok,
                   pad_token_id=tok.pad_id)
    assert tok.decode(out.sequences[0, 1:].tolist()) == "abc\nd"  # the token ending the stop string is kept


def test_stream_equals_generate_when_sampling():
    tok = CharTokenizer.train(["abcdefgh"])
    torch.manual_seed(0)
    from seqlab.models.rnn_lm import RNNLanguageModel

    model = RNNLanguageModel(tok.vocab_size, cell="gru", n_layer=1, n_embd=8, hidden_size=16).eval()
    kw = dict(max_new_tokens=15, do_sample=True, top_k=0, seed=3)
    text = "".join(stream(model, tok, "ab", **kw))
    out = generate(model, torch.tensor([tok.encode("ab")]), **kw)
    assert text == tok.decode(out.sequences[0, 2:].tolist())


def test_stream_with_beams_yields_the_best_hypothesis_once():
    tok = CharTokenizer.train(["abcdefgh"])
    model = ScriptLM(tok.encode("fed"), tok.vocab_size, after=tok.eos_id)
    pieces = list(stream(model, tok, "a", max_new_tokens=6, num_beams=2, eos_token_id=tok.eos_id))
    assert pieces == ["fed"]


def test_stream_from_an_encoder_decoder_gives_the_target_only():
    tok = CharTokenizer.train(["abcdefgh"])

    class Seq2SeqScript(ScriptLM):
        is_encoder_decoder = True
        bos_id = tok.bos_id

    model = Seq2SeqScript(tok.encode("hgf"), tok.vocab_size, after=tok.eos_id)
    assert "".join(stream(model, tok, "abc", max_new_tokens=8, eos_token_id=tok.eos_id)) == "hgf"
    out = generate(model, torch.tensor([tok.encode("abc")]), max_new_tokens=8, eos_token_id=tok.eos_id)
    assert out.sequences[0].tolist() == [tok.bos_id] + tok.encode("hgf") + [tok.eos_id]


@pytest.mark.parametrize("beams", [1, 2])
def test_stream_finish_reason(beams):
    tok = CharTokenizer.train(["abcdefgh\n"])
    model = ScriptLM(tok.encode("abc\ndef"), tok.vocab_size, after=tok.eos_id)
    kw = dict(num_beams=beams, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    cases = [(dict(max_new_tokens=20), "abc\ndef", "stop"),  # EOS
             (dict(max_new_tokens=20, stop_strings=["\nd"]), "abc\nd", "stop"),
             (dict(max_new_tokens=3), "abc", "length")]
    for options, text, reason in cases:
        pieces = stream(model, tok, "a", **kw, **options)
        assert pieces.finish_reason is None  # not known before the end
        assert "".join(pieces) == text
        assert pieces.finish_reason == reason, (options, beams)


def test_stream_cuts_a_held_back_tail_at_the_stop_string():
    # a token "a" + the first byte of "é": the engine stops on "xa" while the detokenizer holds that token back
    tok = BPETokenizer.train(["xaé xaè xaê xaà " * 5], vocab_size=262)
    script = tok.encode("ok xaé")
    assert tok.decode(script[-2:-1]) == "a\ufffd", "the test needs a token ending in a partial character"
    model = ScriptLM(script, tok.vocab_size, after=tok.eos_id)
    pieces = stream(model, tok, "hello", max_new_tokens=len(script) + 2, stop_strings=["xa"])
    assert "".join(pieces) == "ok xa" and pieces.finish_reason == "stop"
