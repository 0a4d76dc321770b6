"""`seqlab generate`: text, JSON, stdin batches, streaming, stop strings and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line_error

from seqlab.checkpoint import save_weights
from seqlab.config import Config, DecodeConfig, ModelConfig
from seqlab.data.tokenizers import CharTokenizer
from seqlab.decode import generate
from seqlab.models import build_model
from seqlab.runs import RunDir

CONTEXT = 24


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny char-level Transformer run: config.yaml, tokenizer.json, model.safetensors."""
    path = tmp_path_factory.mktemp("run")
    tok = CharTokenizer.train(["abcdefgh ijk\n"])
    config = Config(model=ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=16, context_length=CONTEXT),
                    decode=DecodeConfig(max_new_tokens=8, do_sample=False))
    torch.manual_seed(0)
    model = build_model(config.model, tok.vocab_size)
    for p in model.parameters():
        p.data.mul_(10)  # a peaky model: greedy decoding has no near-ties
    run = RunDir(path)
    run.write_config(config)
    tok.save(run.tokenizer)
    save_weights(model, run.model)
    return path, model.eval(), tok


def reference(run_dir, prompt: str, **kw) -> str:
    _, model, tok = run_dir
    ids = torch.tensor([tok.encode(prompt)])
    out = generate(model, ids, max_new_tokens=8, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, **kw)
    return tok.decode(out.sequences[0, ids.shape[1]:].tolist())


def test_greedy_text(cli, run_dir):
    r = cli("generate", run_dir[0], "--prompt", "abc", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "abc" + reference(run_dir, "abc") + "\n"


def test_json_beam_search_with_several_returns(cli, run_dir):
    r = cli("generate", run_dir[0], "--prompt", "hi", "--num-beams", "3", "--num-return-sequences", "2",
            "--early-stopping", "never", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    gens = out["results"][0]["generations"]
    assert len(gens) == 2 and gens[0]["score"] >= gens[1]["score"]
    assert gens[0]["text"] == reference(run_dir, "hi", num_beams=3, early_stopping="never")
    assert out["options"]["num_beams"] == 3 and out["options"]["early_stopping"] == "never"


def test_stdin_prompts_are_batched_left_padded(cli, run_dir):
    prompts = ["a", "bcdef", "gh i"]
    r = cli("generate", run_dir[0], "--prompt", "-", "--json", stdin="\n".join(prompts) + "\n")
    assert r.exit_code == 0, r.stderr
    texts = [res["generations"][0]["text"] for res in json.loads(r.stdout)["results"]]
    assert texts == [reference(run_dir, p) for p in prompts]


def test_stdin_prompts_end_at_newlines_only(cli, run_dir):
    r = cli("generate", run_dir[0], "--prompt", "-", "--json", stdin="a\u2028b\x0cc\nhi\n")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["results"]) == 2  # U+2028 and a form feed stay inside the first prompt


def test_stream_prints_the_same_text(cli, run_dir):
    plain = cli("generate", run_dir[0], "--prompt", "abc")
    streamed = cli("generate", run_dir[0], "--prompt", "abc", "--stream")
    assert streamed.exit_code == 0, streamed.stderr
    assert streamed.stdout == plain.stdout


def test_compile_gives_the_same_text(cli, run_dir):
    for extra in ((), ("--stream",)):
        plain = cli("generate", run_dir[0], "--prompt", "-", *extra, stdin="abc\nhi\n")
        r = cli("generate", run_dir[0], "--prompt", "-", "--compile", *extra, stdin="abc\nhi\n")
        assert r.exit_code == 0, r.stderr
        assert "note:" not in r.stderr and r.stdout == plain.stdout
    report = json.loads(cli("generate", run_dir[0], "--prompt", "abc", "--compile", "--json").stdout)
    tokens = sum(g["tokens"] for r in report["results"] for g in r["generations"])
    assert 0 < report["compile_s"] < report["seconds"]  # the first step; tokens/s is the speed after it
    decoding = report["seconds"] - report["compile_s"]  # both rounded to 1e-4 s
    assert tokens / (decoding + 2e-4) - 0.05 <= report["tokens_per_s"] <= tokens / (decoding - 2e-4) + 0.05


def test_compile_on_a_model_it_does_not_apply_to_notes_it_and_decodes(cli, tmp_path):
    from tiny_runs import LM, config_for, make_run, write_text_corpus

    rnn = dict(LM, arch="rnn_lm", cell="lstm", hidden_size=32)
    run = make_run(tmp_path / "rnn", config_for(write_text_corpus(tmp_path / "t.txt"), rnn, "lm"))
    plain = cli("generate", run, "--prompt", "the king")
    r = cli("generate", run, "--prompt", "the king", "--compile")
    assert r.exit_code == 0 and r.stdout == plain.stdout
    assert "note: --compile applies to fp32 Transformer LMs on CPU or CUDA, not this RNNLanguageModel" in r.stderr


def test_sampling_is_seeded(cli, run_dir):
    args = ("generate", run_dir[0], "--prompt", "abc", "--do-sample", "--temperature", "5", "--top-k", "0",
            "--num-return-sequences", "3", "--json")
    first, again = cli(*args, "--seed", "1"), cli(*args, "--seed", "1")
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["results"] == json.loads(again.stdout)["results"]


def test_stop_string_cuts_the_text(cli, run_dir):
    full = reference(run_dir, "abc")
    stop = full[2:4]
    r = cli("generate", run_dir[0], "--prompt", "abc", "--stop", stop, "--json")
    text = json.loads(r.stdout)["results"][0]["generations"][0]["text"]
    assert text == full[:full.index(stop) + len(stop)]


@pytest.mark.parametrize("args", [
    ("--num-beams", "-2"),
    ("--num-beams", "0"),
    ("--top-p", "0"),
    ("--top-p", "1.5"),
    ("--do-sample", "--temperature", "0"),
    ("--do-sample", "--temperature", "-1"),
    ("--num-beams", "2", "--num-return-sequences", "3"),
    ("--early-stopping", "maybe"),
    ("--label", "positive"),
    ("--stream", "--json"),
    ("--checkpoint", "newest"),
])
def test_bad_options(cli, run_dir, args):
    assert_one_line_error(cli("generate", run_dir[0], "--prompt", "abc", *args))


def test_unknown_run_directory(cli, tmp_path):
    assert_one_line_error(cli("generate", tmp_path / "nope", "--prompt", "abc"))


def test_prompt_longer_than_the_context(cli, run_dir):
    r = cli("generate", run_dir[0], "--prompt", "a" * (CONTEXT + 3))
    assert_one_line_error(r)
    assert "context" in r.stderr


def test_help_lists_every_option(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich shortens long flags to the terminal width
    r = cli("generate", "--help")
    for flag in ("--max-new-tokens", "--num-beams", "--num-return-sequences", "--do-sample", "--greedy", "--top-k",
                 "--top-p", "--min-p", "--temperature", "--repetition-penalty", "--no-repeat-ngram-size",
                 "--length-penalty", "--early-stopping", "--stop", "--seed", "--device", "--stream", "--json"):
        assert flag in r.stdout


def test_json_marks_a_generation_cut_by_the_cap(cli, run_dir):
    def generation(*args):
        r = cli("generate", run_dir[0], "--prompt", "abc", "--json", *args)
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)["results"][0]["generations"][0]

    cut = generation("--max-new-tokens", "3")
    assert cut["tokens"] == 3 and cut["finish_reason"] == "length"
    stopped = generation("--stop", cut["text"][:2])
    assert stopped["text"] == cut["text"][:2] and stopped["finish_reason"] == "stop"
    beams = generation("--max-new-tokens", "3", "--num-beams", "2")
    assert beams["finish_reason"] == "length"
