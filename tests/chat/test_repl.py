"""The two chat loops: scripted (piped stdin) and interactive (a terminal, driven here through input())."""

from __future__ import annotations

import io

import pytest
from tiny_runs import (
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_pairs_corpus,
)

from seqlab.chat import ChatSession
from seqlab.chat.repl import run_interactive, run_scripted
from seqlab.decode import GenerationOptions
from seqlab.models.loading import load_model_from_run


@pytest.fixture(scope="module")
def session_factory(tmp_path_factory):
    root = tmp_path_factory.mktemp("repl")
    run = make_run(root / "run", config_for(write_pairs_corpus(root / "p.jsonl"), SEQ2SEQ, "pairs"))
    model, tok, _ = load_model_from_run(run)
    return lambda: ChatSession(model, tok, GenerationOptions(max_new_tokens=5))


def test_scripted_one_reply_per_turn_commands_on_stderr(session_factory):
    session = session_factory()
    out, err = io.StringIO(), io.StringIO()
    replies = run_scripted(session, io.StringIO("hello\n\n/show\n  bye  \n/quit\nnever read\n"), out, err)
    assert replies == 2 and len(out.getvalue().splitlines()) == 2
    assert err.getvalue().startswith("strategy greedy")
    assert session.turns[0::2] == ["hello", "bye"]


def test_interactive_streams_replies_and_leaves_on_ctrl_d(session_factory, monkeypatch):
    lines = iter(["hello", "/strategy beam 2", "/nope", "bye"])

    def fake_input(prompt):
        assert prompt == "you> "
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    session = session_factory()
    out = io.StringIO()
    run_interactive(session, "runs/x", out, io.StringIO())
    text = out.getvalue()
    assert text.startswith("chatting with runs/x (seq2seq); /help for commands, Ctrl-D to leave")
    assert text.count("bot> ") == 2 and "strategy beam 2" in text and "error: unknown command /nope" in text
    assert session.turns[0::2] == ["hello", "bye"] and session.options.num_beams == 2
