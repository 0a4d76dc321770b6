"""`seqlab import-hf` / `export-hf`: a GPT-2 folder built offline, through a seqlab run and back."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line_error
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from seqlab.models.loading import load_model_from_run

TEXT = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
        "The slings and arrows of outrageous fortune", "Or to take arms against a sea of troubles"] * 4


def char_lm_run(path, text: str, **model_keys):
    """A run at `path` holding a seeded one-block Transformer LM (`model_keys` override its config) with a char
    tokenizer trained on `text`: (run, model, tokenizer)."""
    from seqlab.checkpoint import save_weights
    from seqlab.config import Config, ModelConfig
    from seqlab.data.tokenizers import train_tokenizer
    from seqlab.models import build_model
    from seqlab.runs import open_run

    run = open_run(path, must_exist=False)
    model_config = ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=8, **model_keys)
    tokenizer = train_tokenizer("char", [text])
    run.write_config(Config(model=model_config))
    tokenizer.save(run.tokenizer)
    torch.manual_seed(0)
    model = build_model(model_config, tokenizer.vocab_size).eval()
    save_weights(model, run.model)
    return run, model, tokenizer


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """A tiny byte-level BPE with GPT-2's only special token, wrapped as transformers would save it."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    tokenizer = gpt2_tokenizer()
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=len(tokenizer),
                                       bos_token_id=eos, eos_token_id=eos)).eval()
    with torch.no_grad():  # a large spread, so near-ties cannot flip an argmax between implementations
        model.transformer.wte.weight.mul_(30)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def test_import_then_export_keeps_logits_and_token_ids(cli, hf_folder, tmp_path):
    folder, hf_model, hf_tokenizer = hf_folder
    result = cli("import-hf", folder, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["n_layer"], summary["vocab_size"], summary["context_length"]) == (2, len(hf_tokenizer), 32)

    model, tokenizer, config = load_model_from_run(tmp_path / "run")
    assert (config.model.arch, config.model.positions, config.model.activation) == ("transformer_lm", "learned",
                                                                                     "gelu_new")
    assert config.model.bias and config.model.tie_embeddings and config.data.tokenizer == "bpe"
    text = "To be, or not to suffer the question"
    ids = tokenizer.encode(text)
    assert ids == hf_tokenizer(text)["input_ids"] and tokenizer.eos_id == hf_tokenizer.eos_token_id
    idx = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf_model(idx).logits, atol=1e-5, rtol=1e-5)

    result = cli("export-hf", tmp_path / "run", "--out", tmp_path / "back")
    assert result.exit_code == 0, result.stderr
    assert "tokenizer: exported" in result.stdout
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    back_tokenizer = GPT2TokenizerFast.from_pretrained(tmp_path / "back")
    assert back_tokenizer(text)["input_ids"] == ids and back.config.eos_token_id == hf_tokenizer.eos_token_id
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, hf_model(idx).logits, atol=1e-5, rtol=1e-5)


def test_generate_from_an_imported_run_matches_hf_generate(cli, hf_folder, tmp_path):
    folder, hf_model, hf_tokenizer = hf_folder
    assert cli("import-hf", folder, "--out", tmp_path / "run").exit_code == 0
    prompts = ["To be, or not", "The slings"]
    result = cli("generate", tmp_path / "run", "--prompt", "-", "--greedy", "--max-new-tokens", "12",
                 "--device", "cpu", "--json", stdin="\n".join(prompts) + "\n")
    assert result.exit_code == 0, result.stderr
    texts = [r["generations"][0]["text"] for r in json.loads(result.stdout)["results"]]
    eos = hf_tokenizer.eos_token_id
    for prompt, text in zip(prompts, texts, strict=True):
        ids = torch.tensor([hf_tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            out = hf_model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=eos)
        assert text and text == hf_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_import_errors(cli, hf_folder, tmp_path):
    folder = hf_folder[0]
    assert_one_line_error(cli("import-hf", tmp_path / "missing", "--out", tmp_path / "r1"))
    assert_one_line_error(cli("import-hf", folder))  # no --out
    (tmp_path / "empty").mkdir()
    result = cli("import-hf", tmp_path / "empty", "--out", tmp_path / "r2")
    assert_one_line_error(result)
    assert "no config.json" in result.stderr
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    (bert / "model.safetensors").write_bytes(b"")
    result = cli("import-hf", bert, "--out", tmp_path / "r3")
    assert_one_line_error(result)
    assert "only GPT-2" in result.stderr
    broken = tmp_path / "broken"
    GPT2Config(n_layer=1, n_head=1, n_embd=4, vocab_size=10, n_positions=4).save_pretrained(broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    result = cli("import-hf", broken, "--out", tmp_path / "r4")
    assert_one_line_error(result)
    assert "cannot load the GPT-2 weights" in result.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    result = cli("import-hf", folder, "--out", tmp_path / "taken")
    assert_one_line_error(result)
    assert "already exists" in result.stderr
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3", "r4"))


def test_export_errors(cli, tmp_path):
    from seqlab.checkpoint import save_weights
    from seqlab.config import Config, ModelConfig
    from seqlab.data.tokenizers import train_tokenizer
    from seqlab.models import build_model
    from seqlab.runs import open_run

    assert_one_line_error(cli("export-hf", tmp_path / "nowhere", "--out", tmp_path / "o1"))
    for name, model_config in [("lstm", ModelConfig(arch="rnn_lm", n_layer=1, n_embd=8, hidden_size=8)),
                               ("rotary", ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=8,
                                                      context_length=8, positions="rotary"))]:
        run = open_run(tmp_path / name, must_exist=False)
        tokenizer = train_tokenizer("char", ["abc"])
        run.write_config(Config(model=model_config))
        tokenizer.save(run.tokenizer)
        save_weights(build_model(model_config, tokenizer.vocab_size), run.model)
        result = cli("export-hf", run.path, "--out", tmp_path / f"out-{name}")
        assert_one_line_error(result)
        assert ("only transformer_lm" if name == "lstm" else "positions are 'rotary'") in result.stderr
        assert not (tmp_path / f"out-{name}").exists()


def test_export_of_a_char_level_run_writes_the_model_only(cli, tmp_path):
    run, model, tokenizer = char_lm_run(tmp_path / "char", "to be or not", context_length=16, activation="gelu_new")
    result = cli("export-hf", run.path, "--out", tmp_path / "hf", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["tokenizer"].startswith("not exported (a char tokenizer")
    assert not (tmp_path / "hf" / "tokenizer.json").exists()
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert back.config.eos_token_id == tokenizer.eos_id
    idx = torch.tensor([tokenizer.encode("not to be")])
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, model(idx), atol=1e-5, rtol=1e-5)


def test_export_of_a_non_gpt2_run_says_which_set_keys_would_make_it_exportable(cli, tmp_path):
    cases = {"rotary-relu-nobias-untied": (dict(positions="rotary", activation="relu", bias=False,
                                                tie_embeddings=False),
                                           "--set model.positions=learned --set model.activation=gelu_new "
                                           "--set model.bias=true --set model.tie_embeddings=true"),
             "gelu": (dict(activation="gelu"), "--set model.activation=gelu_new can be exported")}
    for name, (keys, fix) in cases.items():
        run, _, _ = char_lm_run(tmp_path / name, "abc", context_length=8, **keys)
        result = cli("export-hf", run.path, "--out", tmp_path / f"out-{name}")
        assert_one_line_error(result)
        assert f"{run.path}: this model does not have GPT-2's architecture" in result.stderr
        assert f"a run trained with {fix}" in result.stderr
        assert not (tmp_path / f"out-{name}").exists()


def test_export_of_a_seq2seq_run_says_which_architecture_exports(cli, tmp_path):
    from tiny_runs import SEQ2SEQ, config_for, make_run, write_pairs_corpus

    run = make_run(tmp_path / "s2s", config_for(write_pairs_corpus(tmp_path / "pairs.jsonl"), SEQ2SEQ, "pairs"))
    result = cli("export-hf", run, "--out", tmp_path / "out")
    assert_one_line_error(result)
    assert "holds a seq2seq_rnn: train one with --set model.arch=transformer_lm --set model.positions=learned " \
           "--set model.activation=gelu_new" in result.stderr


def test_export_prints_nothing_on_stderr(cli, tmp_path):
    run, _, _ = char_lm_run(tmp_path / "gpt2", "abc", context_length=8, activation="gelu_new")
    result = cli("export-hf", run.path, "--out", tmp_path / "hf")
    assert result.exit_code == 0 and result.stderr == "", result.stderr  # no "Writing model shards" progress bar
