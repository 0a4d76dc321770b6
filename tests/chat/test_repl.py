"""The two chat loops: scripted (piped stdin) and interactive (a terminal, driven here through input())."""

from __future__ import annotations

import io

import pytest
import torch
from tiny_runs import (
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_pairs_corpus,
)

from seqlab.chat import ChatSession
from seqlab.chat.repl import run_interactive, run_scripted
from seqlab.data.tokenizers import CharTokenizer
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
    lines = out.getvalue().split("\n")
    assert replies == 2 and len(lines) == 5 and lines[1:3] == ["", ""] and lines[4] == ""  # one per input line
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


class ScriptedSeq2Seq(torch.nn.Module):
    """An encoder-decoder that answers every source with `script` (token ids), then EOS."""

    is_encoder_decoder = True
    max_length = None

    def __init__(self, tok, script: list[int]):
        super().__init__()
        self.script, self.vocab_size, self.eos, self.bos_id = script, tok.vocab_size, tok.eos_id, tok.bos_id

    def _logits(self, position: torch.Tensor) -> torch.Tensor:
        ids = [self.script[p] if p < len(self.script) else self.eos for p in position.tolist()]
        return torch.nn.functional.one_hot(torch.tensor(ids), self.vocab_size).float() * 10

    def prefill(self, input_ids, attention_mask, max_new_tokens):
        position = torch.zeros(input_ids.shape[0], dtype=torch.long)
        return self._logits(position), position

    def step(self, tokens, state):
        return self._logits(state + 1), state + 1

    def reorder_state(self, state, index):
        return state.index_select(0, index)


@pytest.mark.parametrize("beams", [1, 2])
def test_a_reply_with_line_breaks_stays_on_one_line_and_a_cut_one_is_marked(beams):
    text = "a\nb\rc\u2028d"
    tok = CharTokenizer.train([text + " xyz"])
    model = ScriptedSeq2Seq(tok, tok.encode(text))
    session = ChatSession(model, tok, GenerationOptions(max_new_tokens=10, num_beams=beams))
    out = io.StringIO()
    assert run_scripted(session, io.StringIO("x\n\ny\n/set max_new_tokens 3\nz\n"), out, io.StringIO()) == 3
    assert out.getvalue() == "a b c d\n\na b c d\n\na b …\n"
    assert out.getvalue().splitlines() == out.getvalue().split("\n")[:-1]  # no other line boundary
    assert session.turns[-1] == "a b" and session.finish_reason == "length"


def test_interactive_marks_a_cut_reply(session_factory, monkeypatch):
    lines = iter(["/set max_new_tokens 1", "hello", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(lines))
    session = session_factory()
    out = io.StringIO()
    run_interactive(session, "runs/x", out, io.StringIO())
    last = out.getvalue().splitlines()[-1]
    assert session.finish_reason == "length" and last.startswith("bot> ") and last.endswith(" …")
