"""ChatSession: what the model is shown (history of k turns, <sep> or newlines), options, strategies, streaming."""

from __future__ import annotations

import pytest
from tiny_runs import (
    LM,
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_pairs_corpus,
    write_text_corpus,
)

from seqlab.chat import ChatSession
from seqlab.decode import GenerationOptions, stream
from seqlab.errors import SeqlabError
from seqlab.models.loading import load_model_from_run


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    root = tmp_path_factory.mktemp("session_s2s")
    run = make_run(root / "run", config_for(write_pairs_corpus(root / "p.jsonl"), SEQ2SEQ, "pairs"))
    model, tok, _ = load_model_from_run(run)
    return model, tok


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("session_lm")
    run = make_run(root / "run", config_for(write_text_corpus(root / "t.txt"), LM, "lm", tokenizer="char"))
    model, tok, _ = load_model_from_run(run)
    return model, tok


def test_seq2seq_source_is_the_last_k_turns_joined_by_sep(seq2seq):
    session = ChatSession(*seq2seq, GenerationOptions(max_new_tokens=4), history_turns=3)
    assert session.prompt("hello") == "hello"
    first = "".join(session.reply("hello"))
    assert session.turns == ["hello", " ".join(first.split())] and not first.startswith(" ")
    "".join(session.reply("how   are you"))
    assert session.prompt("bye") == f"how are you <sep> {session.turns[-1]} <sep> bye"
    session.reset()
    assert session.turns == [] and session.prompt("bye") == "bye"


def test_the_reply_is_the_streaming_generator_s_text(seq2seq):
    model, tok = seq2seq
    session = ChatSession(model, tok, GenerationOptions(max_new_tokens=6), history_turns=1)
    expected = "".join(stream(model, tok, "hello", max_new_tokens=6, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id))
    assert "".join(session.reply("hello")) == expected.lstrip()


def test_lm_prompt_is_the_history_one_turn_per_line_and_replies_stop_at_a_newline(lm):
    session = ChatSession(*lm, GenerationOptions(max_new_tokens=40), history_turns=2)
    assert session.prompt("to be") == "to be\n"
    reply = "".join(session.reply("to be"))
    assert "\n" not in reply
    assert session.prompt("or not") == f"{session.turns[-1]}\nor not\n"


def test_sampling_is_reproducible_for_a_seed(seq2seq):
    def replies(seed):
        session = ChatSession(*seq2seq, GenerationOptions(max_new_tokens=6, do_sample=True), seed=seed)
        return ["".join(session.reply(t)) for t in ("hello", "bye")]

    assert replies(3) == replies(3)


def test_options_strategies_and_their_errors(seq2seq):
    session = ChatSession(*seq2seq, GenerationOptions(max_new_tokens=4))
    session.set_option("temperature", 0.7)
    session.set_option("top_k", "12")  # as typed in the REPL: checked and converted
    session.set_option("history_turns", 3)
    assert (session.options.temperature, session.options.top_k, session.history_turns) == (0.7, 12, 3)
    session.set_strategy("beam", 5)
    assert (session.options.num_beams, session.options.do_sample) == (5, False)
    assert session.describe().startswith("strategy beam 5")
    session.set_strategy("sample")
    assert (session.options.num_beams, session.options.do_sample) == (1, True)
    with pytest.raises(SeqlabError, match="unknown option 'temprature'"):
        session.set_option("temprature", 1.0)
    with pytest.raises(SeqlabError, match="temperature"):
        session.set_option("temperature", 0)
    with pytest.raises(SeqlabError, match="temperature"):
        session.set_option("temperature", "hot")
    with pytest.raises(SeqlabError, match="history_turns"):
        session.set_option("history_turns", 0)
    with pytest.raises(SeqlabError, match="unknown strategy"):
        session.set_strategy("nucleus")
    assert session.options.temperature == 0.7  # a rejected value changes nothing
