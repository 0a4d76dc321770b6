"""`seqlab chat` with piped stdin: one reply per line, a trained chatbot answers, Chinese, LM runs, errors."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error, run_seqlab
from tiny_runs import (
    LM,
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    train_run,
    write_pairs_corpus,
    write_text_corpus,
)


@pytest.fixture(scope="module")
def chatbot(tmp_path_factory):
    """A GRU + Luong chatbot that has learnt six exchanges by heart (a few seconds of training)."""
    root = tmp_path_factory.mktemp("chatbot")
    corpus = write_pairs_corpus(root / "pairs.jsonl")
    return train_run(root / "run", config_for(corpus, SEQ2SEQ, "pairs", max_steps=80, lr=3e-2, warmup_steps=5))


def test_piped_stdin_gets_one_line_per_input_line_and_nothing_else(chatbot):
    script = "hello\n\nhow are you\n/strategy beam 3\nbye\n/set temperature 0.5\nwhat is your name\n"
    result = run_seqlab("chat", chatbot, "--device", "cpu", stdin=script, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["hi there", "", "i am fine", "", "see you later", "", "my name is bot", ""]
    assert "strategy beam 3" in result.stderr  # command feedback stays off stdout


def test_a_blank_line_gets_an_empty_line_so_replies_line_up(cli, chatbot):
    result = cli("chat", chatbot, "--device", "cpu", stdin="hello\n\nbye\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "hi there\n\nsee you later\n"


def test_a_reply_cut_by_the_cap_is_marked(cli, chatbot):
    # 3 tokens: "hi there" and its EOS fit, "my name is bot" does not
    result = cli("chat", chatbot, "--device", "cpu", "--max-new-tokens", "3", stdin="what is your name\n/show\nhello\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["my name is …", "", "hi there"]
    assert "last reply: finish_reason length (cut at max_new_tokens 3" in result.stderr
    shown = cli("chat", chatbot, "--device", "cpu", stdin="bye\n/show\n")
    assert shown.stdout.splitlines() == ["see you later", ""] and "last reply: finish_reason stop" in shown.stderr


def test_in_process_with_history_and_reset(cli, chatbot):
    result = cli("chat", chatbot, "--device", "cpu", "--history-turns", "1", stdin="thank you\n/reset\nbye\n/dance\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["you are welcome", "", "see you later", ""]
    assert "unknown command /dance" in result.stderr


def test_chinese_chatterbot_run(cli, tmp_path):
    config = config_for("chatterbot/chinese", SEQ2SEQ, "pairs", tokenizer="word")
    config["data"]["lang"] = "zh"
    run = make_run(tmp_path / "zh", config)
    result = cli("chat", run, "--device", "cpu", "--max-new-tokens", "5", stdin="你好\n你叫什么名字？\n")
    assert result.exit_code == 0, result.stderr
    replies = result.stdout.splitlines()
    assert len(replies) == 2 and all(replies)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(replies))


def test_language_model_run_replies_one_line_each(cli, tmp_path):
    run = make_run(tmp_path / "lm", config_for(write_text_corpus(tmp_path / "t.txt"), LM, "lm", tokenizer="char"))
    result = cli("chat", run, "--device", "cpu", "--do-sample", "--max-new-tokens", "20",
                 stdin="to be or not\nall the world\n")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_a_turn_that_fails_is_an_error_line_and_the_script_goes_on(cli, tmp_path):
    run = make_run(tmp_path / "lm", config_for(write_text_corpus(tmp_path / "t.txt"), LM, "lm", tokenizer="char"))
    too_long = "to be or not to be that is the question"  # more characters than the model's context of 32
    result = cli("chat", run, "--device", "cpu", "--max-new-tokens", "4", stdin=f"all\n{too_long}\nthe\n")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    assert "error: prompt of" in result.stderr and "context" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--history-turns", "0"], "--history-turns"),
    (["--temperature", "0", "--do-sample"], "temperature"),
    (["--checkpoint", "newest"], "unknown checkpoint"),
])
def test_bad_options_are_one_line_errors(cli, chatbot, args, message):
    result = cli("chat", chatbot, "--device", "cpu", *args, stdin="hello\n")
    assert_one_line_error(result)
    assert message in result.stderr


def test_missing_run_is_one_line_error(cli, tmp_path):
    assert_one_line_error(cli("chat", tmp_path / "nope", stdin="hello\n"))


def test_an_unset_reply_cap_comes_from_the_training_data(cli, tmp_path, capsys):
    config = config_for(write_pairs_corpus(tmp_path / "pairs.jsonl"), SEQ2SEQ, "pairs", max_steps=2)
    config["data"]["max_target_len"] = 3  # "my name is bot" and "good morning to you" lose a word
    del config["decode"]["max_new_tokens"]
    run = train_run(tmp_path / "run", config)
    warning = "warning: 8 of 24 targets (33.3%) were cut to data.max_target_len=3 tokens; raise it with --set " \
              "data.max_target_len=4 (keeps all whole)"
    assert warning in capsys.readouterr().err.splitlines()  # training says so
    assert json.loads((run / "run.json").read_text())["longest_target"] == 3
    shown = cli("chat", run, "--device", "cpu", stdin="/show\n")
    assert "max_new_tokens 11," in shown.stderr  # 3 + at least 8
    assert "max_new_tokens 5," in cli("chat", run, "--device", "cpu", "--max-new-tokens", "5", stdin="/show\n").stderr
    generated = cli("generate", run, "--prompt", "hello", "--json", "--device", "cpu")
    assert json.loads(generated.stdout)["options"]["max_new_tokens"] == 11
