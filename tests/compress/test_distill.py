"""`seqlab distill`: the word-level KD loss by hand, tiny LM and seq2seq students end to end through the CLI,
sequence-level KD's cached corpus, exact resume, and one-line errors for bad input."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import assert_one_line_error
from tiny_runs import (
    LM,
    SEQ2SEQ,
    config_for,
    one_thread,  # noqa: F401 - an autouse fixture
    train_run,
    write_pairs_corpus,
    write_text_corpus,
)

from seqlab.config import load_config
from seqlab.train import distill
from seqlab.train.batches import WindowSampler
from seqlab.train.distill import distillation_loss
from seqlab.train.lm import train_lm
from seqlab.train.pair_batches import PairBatcher
from seqlab.train.seq2seq import train_seq2seq

STUDENT_LM = {**LM, "n_embd": 16}  # half the teacher's width
STUDENT_SEQ2SEQ = {**SEQ2SEQ, "n_embd": 16, "hidden_size": 16}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    """A tiny LM teacher and a tiny seq2seq teacher (a few seconds), and student configs for each."""
    root = tmp_path_factory.mktemp("teachers")
    text, pairs = write_text_corpus(root / "lines.txt"), write_pairs_corpus(root / "pairs.jsonl")
    paths = {"lm": train_run(root / "lm", config_for(text, LM, "lm", max_steps=30, eval_interval=30)),
             "seq2seq": train_run(root / "seq2seq", config_for(pairs, SEQ2SEQ, "pairs", max_steps=30,
                                                               eval_interval=30, lr=3e-2))}
    for name, model, corpus, task in (("lm", STUDENT_LM, text, "lm"), ("seq2seq", STUDENT_SEQ2SEQ, pairs, "pairs")):
        student = config_for(corpus, model, task, max_steps=6, eval_interval=3, log_interval=1)
        paths[f"{name}_student"] = root / f"{name}_student.yaml"
        paths[f"{name}_student"].write_text(yaml.safe_dump(student), encoding="utf-8")
    return paths


# ----------------------------------------------------------------------------- the loss


def test_word_kd_loss_equals_a_hand_computation():
    student = torch.tensor([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [9.0, 9.0, 9.0]]])  # (1, 3, 3); the last is padding
    teacher = torch.tensor([[[2.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 9.0]]])
    targets = torch.tensor([[1, 2, -100]])
    alpha, T = 0.3, 2.0

    def softmax(z):
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    def log_softmax1(z):  # at T = 1
        m = math.log(sum(math.exp(v) for v in z))
        return [v - m for v in z]

    expected = 0.0
    for s, t, y in zip(student[0, :2].tolist(), teacher[0, :2].tolist(), (1, 2), strict=True):
        p_t, p_s = softmax(t), softmax(s)
        kl = sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s, strict=True))
        expected += alpha * T * T * kl + (1 - alpha) * -log_softmax1(s)[y]
    expected /= 2  # the mean over the two real tokens
    got = distillation_loss(student, teacher, targets, alpha, T)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_alpha_0_is_the_cross_entropy_and_alpha_1_the_scaled_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)  # (B, T, V)
    targets = torch.randint(7, (2, 5))
    targets[1, 3:] = -100
    real = targets != -100
    ce = F.cross_entropy(student[real], targets[real])
    torch.testing.assert_close(distillation_loss(student, teacher, targets, 0.0, 3.0), ce)
    T = 3.0
    kl = F.kl_div(F.log_softmax(student[real] / T, -1), F.softmax(teacher[real] / T, -1), reduction="batchmean")
    torch.testing.assert_close(distillation_loss(student, teacher, targets, 1.0, T), T * T * kl)
    assert distillation_loss(teacher, teacher, targets, 1.0, T).item() == pytest.approx(0.0, abs=1e-6)


def test_the_teacher_is_frozen_and_gets_no_gradient(teachers, tmp_path):
    from seqlab.models.loading import load_model_from_run

    teacher, _, _ = load_model_from_run(teachers["lm"])
    teacher.requires_grad_(False)
    student, _, _ = load_model_from_run(teachers["lm"])
    student.train()
    inputs = torch.randint(5, 20, (2, 8))
    loss = distill.lm_word_loss(teacher, load_config(teachers["lm_student"]).distill)(student, (inputs, inputs))
    loss.backward()
    assert not teacher.training and all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


# ----------------------------------------------------------------------------- end to end


def _generate_json(cli, run: Path, prompt: str) -> dict:
    result = cli("generate", run, "--prompt", prompt, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["word", "sequence"])
def test_lm_distillation_end_to_end(cli, teachers, tmp_path, kind):
    out = tmp_path / "student"
    r = cli("distill", teachers["lm"], "--student", teachers["lm_student"], "--out", out, "--kind", kind,
            "--decoding", "beam", "--num-beams", "2", "--prefix-length", "8", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["step"] == 6 and summary["kind"] == kind and summary["teacher"] == str(teachers["lm"].resolve())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["distill"]["teacher"] == str(teachers["lm"].resolve()) and saved["distill"]["kind"] == kind
    assert saved["model"]["n_embd"] == 16 and saved["data"] == yaml.safe_load((teachers["lm"] / "config.yaml")
                                                                           .read_text())["data"]
    assert (out / "tokenizer.json").read_text() == (teachers["lm"] / "tokenizer.json").read_text()
    assert json.loads((out / "run.json").read_text())["distill"]["weights"].endswith("best.safetensors")
    assert (out / "distill_corpus.json").is_file() == (kind == "sequence")
    if kind == "sequence":
        assert json.loads((out / "distill_corpus.json").read_text())["key"]["search"]["num_beams"] == 2
    assert _generate_json(cli, out, "the king")["results"]


@pytest.mark.parametrize("kind", ["word", "sequence"])
def test_seq2seq_distillation_end_to_end(cli, teachers, tmp_path, kind):
    out = tmp_path / "student"
    r = cli("distill", teachers["seq2seq"], "--student", teachers["seq2seq_student"], "--out", out, "--kind", kind,
            "--alpha", "0.7", "--temperature", "1.5", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["step"] == 6
    assert yaml.safe_load((out / "config.yaml").read_text())["distill"]["alpha"] == 0.7
    assert _generate_json(cli, out, "hello")["results"]
    evaluated = cli("eval", out, "--json")  # an ordinary run for eval and chat too
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["examples"] == 6, evaluated.stderr
    chatted = cli("chat", out, stdin="hello\n")
    assert chatted.exit_code == 0 and chatted.stdout.strip(), chatted.stderr


def test_sequence_kd_targets_are_the_teachers_beam_outputs_cached_in_the_run(cli, teachers, tmp_path):
    from seqlab.decode import generate
    from seqlab.models.loading import load_model_from_run

    out = tmp_path / "student"
    r = cli("distill", teachers["seq2seq"], "--student", teachers["seq2seq_student"], "--out", out, "--kind",
            "sequence", "--num-beams", "3", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    cache = json.loads((out / "distill_corpus.json").read_text())
    assert cache["key"]["search"] == {"do_sample": False, "num_beams": 3}  # auto: beam search for seq2seq
    assert len(cache["corpus"]) == cache["key"]["pairs"] == 18
    teacher, tok, _ = load_model_from_run(teachers["seq2seq"])
    source = tok.encode("hello", add_bos=False, add_eos=False)
    beam = generate(teacher, torch.tensor([source]), max_new_tokens=cache["key"]["max_new_tokens"], num_beams=3,
                    eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, suppress_tokens=[tok.unk_id])
    reply = beam.sequences[0, 1:].tolist()
    reply = reply[:reply.index(tok.eos_id)] if tok.eos_id in reply else reply
    assert reply in cache["corpus"]  # "hello" is a training source: its target is the teacher's beam reply


def test_lm_sequence_kd_keeps_the_prefixes_and_the_stream_length(teachers, tmp_path):
    from seqlab.data.prepare import prepare_data
    from seqlab.models.loading import load_model_from_run

    teacher, tok, cfg = load_model_from_run(teachers["lm"])
    ids = prepare_data(cfg.data, cfg.seed, tokenizer=tok, use_cache=False).splits["train"].ids
    search = {"do_sample": True, "temperature": 1.0, "top_k": 0, "seed": 0}
    stream = distill.lm_teacher_stream(teacher, ids, 16, 4, search, tok, torch.device("cpu"))  # (N,)
    assert stream.shape == ids.shape
    pieces, n = stream[:ids.numel() // 16 * 16].view(-1, 16), ids.numel() // 16
    torch.testing.assert_close(pieces[:, :4], ids[:n * 16].view(n, 16)[:, :4])  # each piece's real prefix
    assert not torch.equal(stream, ids) and not (stream == tok.unk_id).any()


# ----------------------------------------------------------------------------- resume


def _distilled_config(teachers: dict[str, Path], name: str, kind: str, **train: object):
    raw = yaml.safe_load(teachers[f"{name}_student"].read_text())
    raw["train"].update(max_steps=20, eval_interval=10, log_interval=1, **train)
    raw["distill"] = {"teacher": str(teachers[name]), "kind": kind, "num_beams": 2, "prefix_length": 8}
    return load_config(base=raw)


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]


@pytest.mark.parametrize(("name", "kind", "recipe", "source", "method"), [
    ("lm", "word", train_lm, WindowSampler, "next_step"),
    ("seq2seq", "sequence", train_seq2seq, PairBatcher, "next_indices"),
])
def test_ctrl_c_then_resume_equals_the_uninterrupted_distillation(teachers, tmp_path, monkeypatch, name, kind,
                                                                  recipe, source, method):
    config = _distilled_config(teachers, name, kind)
    reference = recipe(config, tmp_path / "ref", "cpu")
    calls, original = {"n": 0}, getattr(source, method)

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] == 13:  # Ctrl-C while step 13 runs: the loop saves a checkpoint after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(source, method, interrupting)
    with pytest.raises(KeyboardInterrupt):
        recipe(config, tmp_path / "run", "cpu")
    monkeypatch.setattr(source, method, original)
    assert _losses(tmp_path / "run")[-1][0] == 13

    def no_decoding(*args, **kwargs):
        raise AssertionError("resume decoded the teacher's corpus again instead of reading its cache")

    monkeypatch.setattr(distill, "seq2seq_teacher_targets", no_decoding)
    monkeypatch.setattr(distill, "lm_teacher_stream", no_decoding)
    resumed = recipe(config, tmp_path / "run", "cpu", resume=True)
    assert _losses(tmp_path / "run") == _losses(tmp_path / "ref")
    assert resumed["weights_sha256"] == reference["weights_sha256"]


def test_resume_refuses_a_teacher_whose_weights_changed(cli, teachers, tmp_path):
    import shutil

    teacher = shutil.copytree(teachers["lm"], tmp_path / "teacher")
    out = tmp_path / "student"
    assert cli("distill", teacher, "--student", teachers["lm_student"], "--out", out, "--device", "cpu").exit_code == 0
    from seqlab.checkpoint import save_weights
    from seqlab.models.loading import load_model_from_run

    model, _, _ = load_model_from_run(teacher)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_weights(model, teacher / "best.safetensors")  # not the weights the student started with
    r = cli("train", "--resume", out, "--set", "train.max_steps=8", "--device", "cpu")
    assert_one_line_error(r)
    assert "teacher's weights" in r.stderr and "changed" in r.stderr


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2(cli, teachers, tmp_path):
    (tmp_path / "notarun").mkdir()
    taken = tmp_path / "taken"
    assert cli("distill", teachers["lm"], "--student", teachers["lm_student"], "--out", taken, "--device",
               "cpu").exit_code == 0
    lm, student = teachers["lm"], teachers["lm_student"]
    cases = {
        "not a run": ("distill", tmp_path / "notarun", "--student", student, "--out", tmp_path / "a"),
        "missing": ("distill", tmp_path / "missing", "--student", student, "--out", tmp_path / "a"),
        "vocabulary": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--set", "data.tokenizer=char"),
        "alpha": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--alpha", "1.5"),
        "negative alpha": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--alpha", "-0.1"),
        "temperature": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--temperature", "0"),
        "existing out": ("distill", lm, "--student", student, "--out", taken),
        "unknown preset": ("distill", lm, "--student", "no-such-preset", "--out", tmp_path / "a"),
        "kind": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--kind", "phrase"),
        "other model kind": ("distill", lm, "--student", teachers["seq2seq_student"], "--out", tmp_path / "a"),
        "longer context": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--set",
                           "model.context_length=64"),
        "set distill": ("distill", lm, "--student", student, "--out", tmp_path / "a", "--set", "distill.alpha=0.1"),
    }
    for what, args in cases.items():
        r = cli(*args)
        assert_one_line_error(r)
        assert not (tmp_path / "a").exists(), what
    assert "vocabulary mismatch" in cli(*cases["vocabulary"]).stderr
    assert "already holds a run" in cli(*cases["existing out"]).stderr


def test_help_gives_the_equation_and_the_resume_command(cli):
    r = cli("distill", "--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "T^2 * KL(softmax(z_t/T) || softmax(z_s/T))" in text and "seqlab train --resume OUT" in text


def test_seqlab_train_distils_a_config_with_a_distill_section(cli, teachers, tmp_path, monkeypatch):
    """A hand-written config with `distill.teacher` (relative here) trains through `seqlab train`; the run records
    the teacher as an absolute path."""
    raw = yaml.safe_load(teachers["lm_student"].read_text())
    monkeypatch.chdir(teachers["lm"].parent)
    raw["distill"] = {"teacher": teachers["lm"].name, "alpha": 0.9}
    (tmp_path / "student.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    r = cli("train", tmp_path / "student.yaml", "--out", tmp_path / "run", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["distill"]
    assert saved["teacher"] == str(teachers["lm"].resolve()) and saved["alpha"] == 0.9


@pytest.mark.slow
def test_two_ranks_distil_like_one_process(teachers, tmp_path):
    """torchrun, 2 CPU ranks (gloo): rank 0 decodes the sequence-KD corpus while rank 1 waits, both read the
    cache, and the losses are the single process's with the same global batch."""
    import subprocess
    import sys

    from conftest import run_seqlab

    env = {"OMP_NUM_THREADS": "1"}
    args = ["distill", str(teachers["lm"]), "--student", str(teachers["lm_student"]), "--kind", "sequence",
            "--num-beams", "2", "--prefix-length", "8", "--device", "cpu", "--json", "--set", "train.grad_accum=2"]
    single = run_seqlab(*args, "--out", tmp_path / "single", env=env)
    assert single.returncode == 0, single.stderr
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "seqlab",
           *args, "--out", str(tmp_path / "ddp")]
    ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    summary = json.loads(ddp.stdout.strip().splitlines()[-1])  # rank 0 alone prints
    assert summary["world_size"] == 2 and summary["weights_sha256"][0] == summary["weights_sha256"][1]
    assert ddp.stderr.count("sequence-level KD: decoded") == 1
    assert (json.loads((tmp_path / "ddp" / "distill_corpus.json").read_text())
            == json.loads((tmp_path / "single" / "distill_corpus.json").read_text()))
    assert [loss for _, loss in _losses(tmp_path / "ddp")] == pytest.approx(
        [loss for _, loss in _losses(tmp_path / "single")], rel=1e-5)
