"""`seqlab generate` with a reply policy: --json reports each generation's action; --stream masks, regenerates
and refuses as the complete replies do; bad policy flags are one line, exit 2."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error
from tiny_runs import (
    one_thread,  # noqa: F401 - an autouse fixture
    train_rude_bot,
)

PROMPTS = "what do you think\nwho am i\nhello\n"


@pytest.fixture(scope="module")
def rude_bot(tmp_path_factory):
    """A GRU chatbot that answers two questions with a listed word (a few seconds of training)."""
    return train_rude_bot(tmp_path_factory.mktemp("rude_bot"))


def generations(cli, run, *args):
    result = cli("generate", run, "--prompt", "-", "--json", "--device", "cpu", *args, stdin=PROMPTS)
    assert result.exit_code == 0, result.stderr
    return [g for r in json.loads(result.stdout)["results"] for g in r["generations"]]


def test_every_generation_reports_its_action(cli, rude_bot):
    plain = generations(cli, rude_bot)
    assert [(g["text"], g["action"]) for g in plain] == [
        ("this is bullshit", "none"), ("you are a bastard", "none"), ("hi there", "none")]
    masked = generations(cli, rude_bot, "--safety", "words")
    assert [(g["text"], g["action"]) for g in masked] == [
        ("this is ********", "masked"), ("you are a *******", "masked"), ("hi there", "none")]
    refused = generations(cli, rude_bot, "--safety", "words", "--safety-action", "refuse")
    assert [(g["text"], g["action"], g["finish_reason"]) for g in refused[:2]] == \
        [("Sorry, I can't say that.", "refused", "content_filter")] * 2


SAMPLED = ["--do-sample", "--num-return-sequences", "3"]


@pytest.mark.parametrize("strategy", [[], SAMPLED, ["--num-beams", "3"]])
def test_regenerate_ends_clean_or_refused(cli, rude_bot, strategy):
    out = generations(cli, rude_bot, "--safety", "words", "--safety-action", "regenerate", *strategy)
    assert len(out) == 3 * (3 if "--do-sample" in strategy else 1)
    for g in out:
        assert "bullshit" not in g["text"] and "bastard" not in g["text"]
        assert g["action"] in ("none", "regenerated", "refused")
    assert out[-1]["text"] == "hi there" and out[-1]["action"] == "none"


def test_a_regenerated_entry_reports_its_last_generation(cli, rude_bot):
    """tokens and confidence are those of the generation whose text is shown, not of the flagged first one."""
    first = generations(cli, rude_bot)[0]
    regenerated = generations(cli, rude_bot, "--safety", "words", "--safety-action", "regenerate",
                              "--seed", "0")[0]
    assert regenerated["action"] in ("regenerated", "refused") and regenerated["tries"] >= 2
    if regenerated["action"] == "regenerated":
        assert regenerated["confidence"] != first["confidence"]
        assert regenerated["tokens"] >= len(regenerated["text"].split())


def test_a_fallback_threshold_above_every_confidence(cli, rude_bot):
    out = generations(cli, rude_bot, "--fallback-threshold", "0")
    assert {(g["text"], g["action"], g["finish_reason"]) for g in out} == \
        {("Sorry, I don't know that yet.", "fallback", "stop")}
    assert all(g["confidence"] < 0 for g in out)
    assert {g["action"] for g in generations(cli, rude_bot, "--fallback-threshold", "-100")} == {"none"}


@pytest.mark.parametrize(("args", "expected"), [
    (["--safety", "words"], "this is ********\n\nyou are a *******\n\nhi there\n"),
    (["--safety", "profanity", "--safety-action", "refuse"],
     "Sorry, I can't say that.\n\nSorry, I can't say that.\n\nhi there\n"),
    (["--safety", "words", "--fallback-threshold", "0"], "Sorry, I don't know that yet.\n\n" * 2
     + "Sorry, I don't know that yet.\n"),
])
def test_stream_gives_what_the_complete_replies_give(cli, rude_bot, args, expected):
    result = cli("generate", rude_bot, "--prompt", "-", "--stream", "--device", "cpu", *args, stdin=PROMPTS)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected
    complete = cli("generate", rude_bot, "--prompt", "-", "--device", "cpu", *args, stdin=PROMPTS)
    assert complete.stdout.rstrip("\n") == expected.rstrip("\n")  # (a blank line follows each one there)


def test_stream_regenerates(cli, rude_bot):
    result = cli("generate", rude_bot, "--prompt", "-", "--stream", "--device", "cpu", "--safety", "words",
                 "--safety-action", "regenerate", stdin=PROMPTS)
    first, second, third = result.stdout.split("\n\n")
    assert first.startswith("this is ") and "bullshit" not in first and "bastard" not in second
    assert third == "hi there\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--safety-action", "explode"], "safety.action: 'explode' is not a valid choice"),
    (["--fallback-threshold", "[1, 2]"], "chat.fallback.threshold: expected float"),
    (["--safety-words", "missing.txt"], "safety.words: ban list missing.txt: no such file"),
])
def test_bad_policy_flags(cli, rude_bot, args, message):
    result = cli("generate", rude_bot, "--prompt", "hello", "--device", "cpu", *args)
    assert_one_line_error(result)
    assert message in result.stderr
