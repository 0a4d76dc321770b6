"""The chat's slash commands."""

from __future__ import annotations

import pytest
from tiny_runs import (
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_pairs_corpus,
)

from seqlab.chat import ChatSession
from seqlab.chat.commands import HELP, is_command, run_command
from seqlab.decode import GenerationOptions
from seqlab.errors import SeqlabError
from seqlab.models.loading import load_model_from_run


@pytest.fixture(scope="module")
def session_factory(tmp_path_factory):
    root = tmp_path_factory.mktemp("commands")
    run = make_run(root / "run", config_for(write_pairs_corpus(root / "p.jsonl"), SEQ2SEQ, "pairs"))
    model, tok, _ = load_model_from_run(run)
    return lambda: ChatSession(model, tok, GenerationOptions(max_new_tokens=4))


def test_commands_change_the_session(session_factory):
    session = session_factory()
    assert run_command(session, "/help") == HELP and "/strategy" in HELP
    assert "strategy beam 5" in run_command(session, "/strategy beam 5")
    assert "strategy greedy" in run_command(session, "/strategy greedy")
    assert "strategy sample" in run_command(session, "/strategy sample")
    run_command(session, "/set temperature 0.7")
    assert session.options.temperature == 0.7 and session.options.do_sample
    run_command(session, "/set stop_strings [bye]")
    assert session.options.stop_strings == ["bye"]
    "".join(session.reply("hello"))
    assert run_command(session, "/reset") == "(conversation reset)" and session.turns == []
    assert is_command("/reset") and not is_command("hello /reset")


@pytest.mark.parametrize("line,message", [
    ("/dance", "unknown command /dance"), ("/", "empty command"), ("/set temperature", "usage: /set"),
    ("/strategy", "usage: /strategy"), ("/strategy beam x", "beams"), ("/strategy beam 0", "beams"),
    ("/strategy greedy 5", "usage"), ("/set num_beams -1", "num_beams"),
    ("/set temperature " + "[" * 100_000, "nested too deeply"),
])
def test_bad_commands_raise_seqlab_errors(session_factory, line, message):
    with pytest.raises(SeqlabError, match=message):
        run_command(session_factory(), line)


def test_show_lists_the_options_changed_with_set(session_factory):
    session = session_factory()
    assert run_command(session, "/show") == "strategy greedy, max_new_tokens 4, history_turns 1"  # nothing changed
    run_command(session, "/set repetition_penalty 1.3")
    run_command(session, "/set stop_strings [bye]")
    run_command(session, "/set history_turns 2")
    shown = run_command(session, "/show")
    assert "changed: repetition_penalty 1.3 (was 1.0), stop_strings ['bye'] (was None), history_turns 2 (was 1)" \
        in shown
    run_command(session, "/set repetition_penalty 1.0")
    assert "repetition_penalty" not in run_command(session, "/show")  # back to where it started
    "".join(session.reply("hello"))
    assert "last reply: finish_reason " in run_command(session, "/show")
