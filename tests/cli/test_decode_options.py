"""The decoding flags of generate, eval and chat come from DecodeConfig's fields: one name, type and help each."""

import dataclasses

import pytest
import typer

from seqlab.cli import app
from seqlab.cli.decode_options import decode_options, early_stopping, flag_help
from seqlab.config import DecodeConfig
from seqlab.errors import SeqlabError

FLAGS = {
    "generate": ["max_new_tokens", "min_new_tokens", "do_sample", "num_beams", "num_return_sequences", "temperature",
                 "top_k", "top_p", "min_p", "repetition_penalty", "no_repeat_ngram_size", "length_penalty",
                 "early_stopping", "stop_strings"],
    "eval": ["max_new_tokens", "do_sample", "num_beams", "temperature", "top_k", "top_p", "repetition_penalty",
             "no_repeat_ngram_size"],
    "chat": ["max_new_tokens", "do_sample", "num_beams", "temperature", "top_k", "top_p"],
}
FIELDS = {f.name for f in dataclasses.fields(DecodeConfig)}


def _params(command: str) -> dict:
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_each_decoding_flag_is_its_field_with_the_field_doc(command):
    params = _params(command)
    assert [n for n in params if n in FIELDS] == FLAGS[command]  # the flags, in order, and no others
    for name in FLAGS[command]:
        assert params[name].help.startswith(flag_help(name)), (command, name)


def test_the_flags_keep_their_names():
    params = _params("generate")
    assert params["do_sample"].opts == ["--do-sample"] and params["do_sample"].secondary_opts == ["--greedy"]
    assert params["stop_strings"].opts == ["--stop"] and params["stop_strings"].multiple
    for name in FLAGS["generate"]:
        if name not in ("do_sample", "stop_strings"):
            assert params[name].opts == ["--" + name.replace("_", "-")]


def test_generate_exposes_every_decoding_field_but_the_run_level_one():
    assert FIELDS - set(FLAGS["generate"]) == {"suppress_unk", "banned_words"}  # banned_words: --ban-words FILE


def test_a_flag_has_the_same_help_in_every_command():
    for name in FLAGS["chat"]:
        shared = {command: _params(command)[name].help for command in FLAGS}
        if name == "max_new_tokens":  # each command adds where its default comes from
            assert len({h.split(" Default")[0] for h in shared.values()}) == 1
        else:
            assert len(set(shared.values())) == 1, shared


def test_eval_decodes_greedily_unless_told():
    params = _params("eval")
    assert params["do_sample"].default is False and params["num_beams"].default == 1
    assert _params("generate")["do_sample"].default is None  # generate and chat: the run's decode config


def test_the_command_gets_one_decoding_dict():
    seen = {}

    @decode_options("temperature", "stop_strings", defaults={"temperature": 0.5})
    def command(run: str = typer.Argument(...), decoding: dict = None, seed: int = typer.Option(1, "--seed")):
        seen.update(run=run, decoding=decoding, seed=seed)

    one = typer.Typer()
    one.command()(command)
    one.command("other")(lambda: None)
    from typer.testing import CliRunner

    r = CliRunner().invoke(one, ["command", "x", "--stop", "a", "--stop", "b", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert seen == {"run": "x", "decoding": {"temperature": 0.5, "stop_strings": ["a", "b"]}, "seed": 3}
    assert CliRunner().invoke(one, ["command", "x", "--temperature", "2"]).exit_code == 0
    assert seen["decoding"] == {"temperature": 2.0, "stop_strings": None}


def test_a_flag_that_is_not_a_field_is_refused():
    with pytest.raises(KeyError):
        decode_options("temprature")(lambda decoding=None: None)


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("never", "never"), (None, None)])
def test_early_stopping(text, value):
    assert early_stopping(text) == value


def test_early_stopping_refuses_other_words():
    with pytest.raises(SeqlabError, match="true, false or never"):
        early_stopping("maybe")
