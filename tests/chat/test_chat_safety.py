"""`seqlab chat` with a reply policy: the output filter's actions, the confidence fallback on a FAQ bot, what
/show says, and one-line errors for bad policy input."""

from __future__ import annotations

import io
import re

import pytest
from conftest import assert_one_line_error, run_seqlab
from faq import OUT_OF_SCOPE, faq_config, faq_pairs, write_faq
from tiny_runs import (
    RUDE,
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    train_rude_bot,
    train_run,
    write_pairs_corpus,
)

from seqlab.chat import ChatSession
from seqlab.chat.repl import run_interactive
from seqlab.decode import GenerationOptions
from seqlab.models.loading import load_model_from_run
from seqlab.safety import ReplyPolicy


@pytest.fixture(scope="module")
def rude_bot(tmp_path_factory):
    """A GRU chatbot that answers two questions with a listed word (a few seconds of training)."""
    return train_rude_bot(tmp_path_factory.mktemp("rude_bot"))


@pytest.fixture(scope="module")
def faq_bot(tmp_path_factory):
    """tests/faq.py's shop FAQ chatbot (about five seconds of training)."""
    train, _ = write_faq(tmp_path_factory.mktemp("faq"))
    return train_run(train.parent / "run", faq_config(train))


def test_without_a_policy_the_bot_swears(cli, rude_bot):
    result = cli("chat", rude_bot, "--device", "cpu", stdin="what do you think\nwho am i\n/show\n")
    assert result.stdout.splitlines() == ["this is bullshit", "you are a bastard", ""]
    assert "policy" not in result.stderr and "safety" not in result.stderr


def test_mask(cli, rude_bot):
    result = cli("chat", rude_bot, "--device", "cpu", "--safety", "words",
                 stdin="what do you think\n/show\nhello\n/show\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["this is ********", "", "hi there", ""]
    first, second = result.stderr.split("strategy greedy")[1:]
    assert "safety filter words (action mask)" in first
    assert re.search(r"last reply: finish_reason stop, confidence -[\d.e-]+ \(mean log-prob per token\), "
                     r"policy: masked 1 listed word\n", first)
    assert "policy: nothing to do" in second


def test_regenerate_and_refuse(cli, rude_bot):
    script = "what do you think\nwho am i\n/show\nhello\n"
    regenerated = cli("chat", rude_bot, "--device", "cpu", "--safety", "words",
                      "--safety-action", "regenerate", stdin=script)
    replies = regenerated.stdout.splitlines()
    assert replies[0].startswith("this is ") and "bullshit" not in replies[0] and "bastard" not in replies[1]
    assert replies[3] == "hi there"
    assert re.search(r"policy: (regenerated \(2 tries, 1 listed word banned\)|refused after 3 tries)",
                     regenerated.stderr)
    refused = cli("chat", rude_bot, "--device", "cpu", "--safety", "profanity", "--safety-action", "refuse",
                  stdin=script)
    assert refused.stdout.splitlines() == ["Sorry, I can't say that."] * 2 + ["", "hi there"]
    assert "last reply: finish_reason content_filter" in refused.stderr
    assert "policy: refused after 1 try (1 listed word)" in refused.stderr


def test_a_words_file_turns_the_filter_on(cli, rude_bot, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# the bot's greeting\nthere\n", encoding="utf-8")
    result = cli("chat", rude_bot, "--device", "cpu", "--safety-words", words,
                 stdin="hello\nwhat do you think\n")
    assert result.stdout.splitlines() == ["hi *****", "this is ********"]


def test_the_run_config_sets_the_policy(cli, rude_bot, tmp_path):
    run = copy_run(rude_bot, tmp_path, {
        "  filter: 'off'": "  filter: words", "  action: mask": "  action: refuse",
        "  refusal: Sorry, I can't say that.": "  refusal: Let us talk of something else."})
    result = cli("chat", run, "--device", "cpu", stdin="who am i\nhello\n")
    assert result.stdout.splitlines() == ["Let us talk of something else.", "hi there"]
    masked = cli("chat", run, "--device", "cpu", "--safety-action", "mask", stdin="who am i\n")  # flags win
    assert masked.stdout == "you are a *******\n"
    off = cli("chat", run, "--device", "cpu", "--safety", "off", stdin="who am i\n")
    assert off.stdout == "you are a bastard\n"


def session(run, policy: ReplyPolicy, **options) -> ChatSession:
    model, tok, _ = load_model_from_run(run)
    return ChatSession(model, tok, GenerationOptions(max_new_tokens=8, **options), seed=0, policy=policy)


def test_the_session_streams_through_the_policy_and_remembers_what_was_shown(rude_bot):
    chat = session(rude_bot, ReplyPolicy("words"))
    pieces = list(chat.reply("what do you think"))
    assert "".join(pieces) == "this is ********" and all("bull" not in p for p in pieces)
    assert chat.turns == ["what do you think", "this is ********"]  # the history holds the masked reply
    assert (chat.last.action_taken, chat.finish_reason) == ("masked", "stop")
    policy, last = chat.describe().splitlines()[-2:]
    assert policy == "safety filter words (action mask)"
    assert last.startswith("last reply: finish_reason stop, confidence -") and "policy: masked 1 listed word" in last


@pytest.mark.parametrize("options", [{}, {"do_sample": True}, {"num_beams": 3}])
def test_the_session_regenerates(rude_bot, options):
    chat = session(rude_bot, ReplyPolicy("words", "regenerate"), **options)
    for question, answer in RUDE:
        reply = "".join(chat.reply(question))
        assert reply == chat.turns[-1] and answer.split()[-1] not in reply
        assert chat.last.action_taken in ("regenerated", "refused") and chat.last.tries > 1


def test_the_terminal_shows_the_masked_reply(rude_bot, monkeypatch):
    lines = iter(["who am i", "/show"])

    def fake_input(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    out = io.StringIO()
    run_interactive(session(rude_bot, ReplyPolicy("profanity")), "rude", out, io.StringIO())
    assert "bot> you are a *******\n" in out.getvalue() and "policy: masked 1 listed word" in out.getvalue()


def test_the_fallback_on_a_faq_bot_through_piped_stdin(cli, faq_bot):
    """Learnt questions are answered with confidence near 0; out-of-scope ones, though answered fluently, with
    less. A threshold between the two gives the fallback for the second and the answers for the first."""
    learnt = [question for question, _ in faq_pairs()[::6]]  # one phrasing of every other topic: 12 questions
    unknown = [question for question, _ in OUT_OF_SCOPE]
    shown = cli("chat", faq_bot, "--device", "cpu", stdin="".join(f"{q}\n/show\n" for q in learnt + unknown))
    confidence = [float(c) for c in re.findall(r"confidence (-?[\d.e-]+) ", shown.stderr)]
    assert len(confidence) == len(learnt) + len(unknown)
    known, unsure = confidence[:len(learnt)], confidence[len(learnt):]
    assert max(unsure) < 0 and sum(c < min(known) for c in unsure) >= 4  # the bot is less sure of most
    threshold = (min(known) + sorted(unsure)[len(unsure) // 2]) / 2
    result = run_seqlab("chat", faq_bot, "--device", "cpu", "--fallback-threshold", f"{threshold:.6f}",
                        stdin="".join(f"{q}\n" for q in learnt + unknown) + "/show\n", timeout=120)
    assert result.returncode == 0, result.stderr
    replies = result.stdout.splitlines()
    answers = dict(faq_pairs())
    expected = [answers[q] for q in learnt]
    expected += ["Sorry, I don't know that yet." if c < threshold else reply
                 for c, reply in zip(unsure, shown.stdout.splitlines()[2 * len(learnt)::2], strict=True)]
    assert replies[:-1] == expected and replies.count("Sorry, I don't know that yet.") >= len(unknown) // 2
    assert "fallback below confidence" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--safety-action", "explode"], "safety.action: 'explode' is not a valid choice; choose one of mask, "
                                     "regenerate, refuse"),
    (["--safety", "everything"], "safety.filter: 'everything' is not a valid choice"),
    (["--fallback-threshold", "high"], "chat.fallback.threshold: expected float, got str 'high'"),
    (["--fallback-threshold", "nan"], "chat.fallback.threshold must be a finite number"),
    (["--safety-words", "{empty}"], "holds no words"),
    (["--safety-words", "{comments}"], "holds no words"),
    (["--safety-words", "{folder}"], "is a directory, not a regular file"),
    (["--safety-words", "{binary}"], "binary"),
    (["--safety-words", "{missing}"], "no such file"),
])
def test_bad_policy_input_is_one_line_exit_2(cli, tmp_path, args, message):
    run = make_run(tmp_path / "run", config_for(write_pairs_corpus(tmp_path / "p.jsonl"), SEQ2SEQ, "pairs"))
    files = {"empty": tmp_path / "empty.txt", "comments": tmp_path / "comments.txt", "folder": tmp_path,
             "binary": tmp_path / "words.bin", "missing": tmp_path / "missing.txt"}
    files["empty"].write_bytes(b"")
    files["comments"].write_text("# none yet\n\n", encoding="utf-8")
    files["binary"].write_bytes(bytes(range(256)))
    args = [a.format(**files) for a in args]
    result = cli("chat", run, "--device", "cpu", *args, stdin="hello\n")
    assert_one_line_error(result)
    assert message in result.stderr
    if "--safety-words" in args:
        assert "safety.words: " in result.stderr


def test_a_bad_policy_in_the_run_config_is_one_line_exit_2(cli, rude_bot, tmp_path):
    run = copy_run(rude_bot, tmp_path, {"  action: mask": "  action: explode"})
    result = cli("chat", run, "--device", "cpu", stdin="hello\n")
    assert_one_line_error(result)
    assert "safety.action: 'explode' is not a valid choice" in result.stderr


def copy_run(run, tmp_path, edits: dict[str, str]):
    """A copy of `run` whose config.yaml has `edits` (old line -> new line) made."""
    import shutil

    copy = shutil.copytree(run, tmp_path / "edited")
    text = (copy / "config.yaml").read_text(encoding="utf-8")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    (copy / "config.yaml").write_text(text, encoding="utf-8")
    return copy
