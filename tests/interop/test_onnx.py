"""ONNX export and the onnxruntime engine: the graphs compute eager decoding's logits, and greedy and beam search
through seqlab's one decoding engine give eager's tokens (library and `seqlab generate --engine onnxruntime`)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys

import pytest
import torch
from conftest import assert_one_line_error
from tiny_runs import LINES, LM, SEQ2SEQ, config_for, make_run, write_pairs_corpus, write_text_corpus

from seqlab.checkpoint import save_weights
from seqlab.decode import generate, left_pad
from seqlab.eval.perplexity import lm_nll
from seqlab.interop.onnx_runtime import OnnxLM, load_onnx_model
from seqlab.models.loading import load_model_from_run

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {"transformer": (LM, 10.0),  # (model config, weight scale: a peaky model has no near-ties)
         "lstm": ({"arch": "rnn_lm", "cell": "lstm", "n_layer": 2, "n_embd": 16, "hidden_size": 24}, 3.0),
         "gru": ({"arch": "rnn_lm", "cell": "gru", "n_layer": 1, "n_embd": 16, "hidden_size": 24}, 3.0),
         "rnn": ({"arch": "rnn_lm", "cell": "rnn", "n_layer": 2, "n_embd": 16, "hidden_size": 16}, 3.0)}
PROMPTS = ["the king is", "to be or not to be that"]  # of different lengths: the batch is left-padded
TOL = dict(atol=1e-4, rtol=1e-4)


def assert_logits_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Within 3e-5 of the largest logit: fp32 rounding in another summation order, which the test models' weights,
    scaled up to make them peaky, amplify (unscaled, the graphs agree with eager to ~1e-7)."""
    assert float((got - expected).abs().max()) <= 3e-5 * max(1.0, float(expected.abs().max()))


def export_cli(*args: str) -> dict:
    """`seqlab export-onnx ARGS --json` in-process (module fixtures cannot use the `cli` fixture)."""
    from seqlab.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(["export-onnx", *map(str, args), "--json"])
    assert exited.value.code in (0, None)
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_text_corpus(tmp_path_factory.mktemp("corpus") / "lines.txt")


@pytest.fixture(scope="module")
def exports(corpus, tmp_path_factory):
    """arch name -> (run, eager model, tokenizer, export summary): a tiny run of the architecture, exported by the
    CLI to RUN/onnx (the Transformer with --int8), once per module. Skipped where onnxruntime is absent."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    done = {}

    def export(name: str) -> tuple:
        if name not in done:
            model_config, scale = ARCHS[name]
            run = make_run(tmp_path_factory.mktemp(name) / "run", config_for(corpus, model_config, "lm"))
            model, tokenizer, _ = load_model_from_run(run)
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(scale)
            save_weights(model, run / "model.safetensors")
            done[name] = run, model, tokenizer, export_cli(run, *(["--int8"] if name == "transformer" else []))
        return done[name]

    return export


@pytest.fixture(params=list(ARCHS))
def exported(request, exports):
    return exports(request.param)


@pytest.fixture
def transformer(exports):
    """The Transformer's export, which also carries the int8 graphs and the error cases."""
    return exports("transformer")


def batch(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    return left_pad([tokenizer.encode(p) for p in PROMPTS], tokenizer.pad_id)


def test_export_folder_describes_itself(exported):
    run, model, tokenizer, summary = exported
    folder = run / "onnx"
    manifest = json.loads((folder / "seqlab-onnx.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["seqlab-onnx.json", "tokenizer.json", "prefill.onnx", "step.onnx", "weights.bin",
         *(["int8"] if "int8_graphs" in summary else [])])
    # the weights are stored once for both graphs
    parameters = sum(t.numel() * 4 for t in model.state_dict().values())
    assert summary["bytes"]["total"] < 1.5 * parameters + 200_000
    # torch.export unrolls the Elman RNN over the prompt: its prefill comes from the TorchScript exporter
    prefill_exporter = "torchscript" if manifest["model"].get("cell") == "rnn" else "dynamo"
    assert manifest["graphs"]["prefill"]["exporter"] == prefill_exporter
    assert manifest["graphs"]["step"]["exporter"] == "dynamo" and manifest["int8"] is False
    assert manifest["config"]["model"]["arch"] == model_arch(model)
    assert manifest["source"]["weights"] == "model.safetensors"
    step_inputs = [i["name"] for i in manifest["graphs"]["step"]["inputs"]]
    assert [o.replace("present.", "past.") for o in manifest["graphs"]["step"]["outputs"][1:]] == step_inputs[1:]
    assert summary["check"]["max_abs_logit_diff"] < 1e-4  # fp32 rounding in another order: ~1e-5 (AVX2), ~1e-6 (AVX-512)


def model_arch(model) -> str:
    return "transformer_lm" if hasattr(model, "transformer") else "rnn_lm"


def test_prefill_and_step_logits_match_eager(exported):
    run, model, tokenizer, _ = exported
    onnx_model = load_onnx_model(run / "onnx")
    ids, mask = batch(tokenizer)
    with torch.no_grad():
        expected, state = model.prefill(ids, mask, 6)
        got, onnx_state = onnx_model.prefill(ids, mask, 6)
        assert_logits_close(got, expected)
        for _ in range(6):
            tokens = expected.argmax(-1)
            expected, state = model.step(tokens, state)
            got, onnx_state = onnx_model.step(tokens, onnx_state)
            assert_logits_close(got, expected)


def test_merged_states_step_like_each_alone(exported):
    """merge_states (continuous batching): prompts of different lengths prefilled apart, then stepped together."""
    run, _, tokenizer, _ = exported
    onnx_model = load_onnx_model(run / "onnx")
    firsts = [onnx_model.prefill(torch.tensor([tokenizer.encode(p)]), None, 4) for p in PROMPTS]
    tokens = [logits.argmax(-1) for logits, _ in firsts]  # 2 x (1,)
    alone = torch.cat([onnx_model.step(t, state)[0] for t, (_, state) in zip(tokens, firsts, strict=True)])
    together, _ = onnx_model.step(torch.cat(tokens), onnx_model.merge_states(firsts[0][1], firsts[1][1]))
    assert_logits_close(together, alone)


def test_teacher_forced_logits_match_eager_forward(exported):
    """`model(idx)` through the step graph, and the perplexity evaluation that calls it."""
    run, model, tokenizer, _ = exported
    ids = torch.tensor([tokenizer.encode(PROMPTS[1])] * 2)
    with torch.no_grad():
        expected = model(ids)  # (B, T, V)
    onnx_model = load_onnx_model(run / "onnx")
    assert_logits_close(onnx_model(ids), expected)
    stream = torch.tensor(tokenizer.encode(" ".join(LINES)))
    assert lm_nll(onnx_model, stream, 16) == pytest.approx(lm_nll(model, stream, 16), rel=1e-5)


@pytest.mark.parametrize("options", [dict(), dict(num_beams=4, early_stopping="never"),
                                     dict(num_beams=3, num_return_sequences=2, repetition_penalty=1.3)],
                         ids=["greedy", "beam4", "beam3-returns2-penalty"])
def test_tokens_equal_eager_through_generate(exported, options):
    run, model, tokenizer, _ = exported
    ids, mask = batch(tokenizer)
    common = dict(max_new_tokens=10, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id, **options)
    expected = generate(model, ids, mask, **common)
    got = generate(load_onnx_model(run / "onnx"), ids, mask, **common)
    assert torch.equal(got.sequences, expected.sequences)
    if expected.sequences_scores is not None:
        torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, **TOL)


def test_sampling_with_a_seed_equals_eager(exported):
    run, model, tokenizer, _ = exported
    ids, mask = batch(tokenizer)
    common = dict(max_new_tokens=10, do_sample=True, top_k=5, temperature=0.8, seed=3, pad_token_id=tokenizer.pad_id)
    assert torch.equal(generate(load_onnx_model(run / "onnx"), ids, mask, **common).sequences,
                       generate(model, ids, mask, **common).sequences)


@pytest.mark.parametrize("options", [[], ["--num-beams", "4"]], ids=["greedy", "beam4"])
def test_cli_generate_onnxruntime_equals_torch(cli, exported, options):
    run = exported[0]
    texts = {}
    for engine in ("torch", "onnxruntime"):
        r = cli("generate", run, "--prompt", "-", "--engine", engine, "--json", "--device", "cpu", *options,
                stdin="\n".join(PROMPTS) + "\n")
        assert r.exit_code == 0, r.stderr
        texts[engine] = [g["text"] for res in json.loads(r.stdout)["results"] for g in res["generations"]]
    assert texts["onnxruntime"] == texts["torch"]


def test_cli_streams_the_same_text(cli, exported):
    run = exported[0]
    streamed = cli("generate", run, "--prompt", PROMPTS[0], "--engine", "onnxruntime", "--stream")
    plain = cli("generate", run, "--prompt", PROMPTS[0])
    assert streamed.exit_code == plain.exit_code == 0, streamed.stderr
    assert streamed.stdout == plain.stdout


def test_int8_graphs_load_and_decode(cli, transformer):
    run, model, tokenizer, summary = transformer
    int8 = load_onnx_model(run / "onnx" / "int8")
    assert isinstance(int8, OnnxLM) and int8.int8
    assert summary["int8_graphs"]["bytes"]["weights"] < summary["bytes"]["weights"]
    ids, mask = batch(tokenizer)
    with torch.no_grad():
        expected, _ = model.prefill(ids, mask, 0)
        got, _ = int8.prefill(ids, mask, 0)
    difference = float((got - expected).abs().max())
    assert 0 < difference < 0.05 * float(expected.abs().max())  # int8 weights: close, not equal
    out = generate(int8, ids, mask, max_new_tokens=6, num_beams=3)
    assert out.sequences.shape == (2, ids.shape[1] + 6)
    r = cli("generate", run, "--prompt", PROMPTS[0], "--engine", "onnxruntime", "--onnx", run / "onnx" / "int8",
            "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["generations"][0]["tokens"] > 0


@pytest.mark.parametrize("module", ["onnxruntime", "onnxscript"])
def test_missing_onnxruntime_is_one_line(cli, corpus, tmp_path, monkeypatch, module):
    """Runs with or without the onnx extra installed: the import failure is simulated."""
    run = make_run(tmp_path / "run", config_for(corpus, LM, "lm"))
    monkeypatch.setitem(sys.modules, module, None)  # `import onnxruntime` now raises ImportError
    r = cli("export-onnx", run)
    assert_one_line_error(r)
    assert "seqlab export-onnx needs onnxruntime and onnxscript: pip install 'seqlab[onnx]'" in r.stderr
    assert not (run / "onnx").exists()
    r = cli("generate", run, "--prompt", "the", "--engine", "onnxruntime")
    if module == "onnxruntime":
        assert_one_line_error(r)
        assert "--engine onnxruntime needs onnxruntime: pip install 'seqlab[onnx]'" in r.stderr
    else:  # decoding needs onnxruntime only: the error is the missing export
        assert_one_line_error(r)
        assert "run `seqlab export-onnx" in r.stderr


def test_bad_runs_and_folders_are_one_line_errors(cli, transformer, corpus, tmp_path):
    run = transformer[0]
    seq2seq = make_run(tmp_path / "seq2seq", config_for(write_pairs_corpus(tmp_path / "pairs.jsonl"), SEQ2SEQ, "pairs"))
    r = cli("export-onnx", seq2seq)
    assert_one_line_error(r)
    assert "seq2seq_rnn" in r.stderr and "transformer_lm and rnn_lm" in r.stderr

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = cli("export-onnx", run, "--out", tmp_path / "full")
    assert_one_line_error(r)
    assert "not empty" in r.stderr

    r = cli("generate", seq2seq, "--prompt", "hello", "--engine", "onnxruntime")  # no seq2seq/onnx
    assert_one_line_error(r)
    assert "seqlab export-onnx" in r.stderr

    other = make_run(tmp_path / "other", config_for(corpus, LM, "lm") | {"seed": 1})  # same tokenizer, other weights
    r = cli("generate", other, "--prompt", "the", "--engine", "onnxruntime", "--onnx", run / "onnx")
    assert_one_line_error(r)
    assert "not exported from" in r.stderr

    damaged = tmp_path / "damaged"
    shutil.copytree(run / "onnx", damaged)
    for file in ("step.onnx", "weights.bin"):
        with open(damaged / file, "r+b") as f:
            f.truncate(1000)
        r = cli("generate", run, "--prompt", "the", "--engine", "onnxruntime", "--onnx", damaged)
        assert_one_line_error(r)
        assert f"{file} is damaged" in r.stderr
        shutil.copyfile(run / "onnx" / file, damaged / file)

    (damaged / "seqlab-onnx.json").write_text("{not json")
    r = cli("generate", run, "--prompt", "the", "--engine", "onnxruntime", "--onnx", damaged)
    assert_one_line_error(r)
    assert "seqlab-onnx.json is damaged" in r.stderr

    for flags, message in [(["--engine", "tensorrt"], "--engine must be one of torch, onnxruntime"),
                           (["--engine", "onnxruntime", "--compile"], "--compile applies to --engine torch"),
                           (["--onnx", run / "onnx"], "--onnx DIR goes with --engine onnxruntime"),
                           (["--engine", "onnxruntime", "--device", "cuda"], "decodes on the CPU")]:
        r = cli("generate", run, "--prompt", "the", *flags)
        assert_one_line_error(r)
        assert message in r.stderr


def test_export_help_names_the_command(cli):
    r = cli("export-onnx", "--help")
    assert r.exit_code == 0
    assert "prefill graph" in r.stdout and "--int8" in r.stdout and "--opset" in r.stdout
