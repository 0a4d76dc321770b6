"""A run directory's life: a dead run (killed before its first checkpoint), resume checks (fingerprint), continuing a
finished run (--set train.max_steps), fine-tuning from another run (--init-from), a directory holding prepared data,
and `seqlab eval` of a run whose corpus moved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_one_line_error, metric_lines, shared_data_file, wait_while_running

from seqlab.checkpoint import read_tensors

pytestmark = pytest.mark.shared_data("tinyshakespeare.txt")


@pytest.fixture(autouse=True)
def one_thread(tmp_path, monkeypatch):
    """Tiny models train far faster on one thread of a busy CPU; each test has its own prepare cache, and runs in
    tmp_path (the config names its corpus relatively, as a user's would)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(tmp_path: Path, **train: object) -> Path:
    """tmp/tiny.txt (20,000 characters of tinyshakespeare) and a one-block Transformer config naming it relatively."""
    (tmp_path / "tiny.txt").write_text(shared_data_file("tinyshakespeare.txt").read_text(encoding="utf-8")[:20000],
                                       encoding="utf-8")
    cfg = {"seed": 7,
           "data": {"corpus": "tiny.txt", "task": "lm", "tokenizer": "char", "split": "contiguous",
                    "test_fraction": 0.1},
           "model": {"arch": "transformer_lm", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 16},
           "train": {"batch_size": 8, "max_steps": 20, "eval_interval": 10, "log_interval": 1, "warmup_steps": 2,
                     "lr": 1e-3, "min_lr": 1e-4, "samples": 0, **train}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def checkpoint_step(run: Path) -> int:
    return int(read_tensors(run / "model.safetensors")[1]["step"])


# ----------------------------------------------------------------------------- a run killed before its first checkpoint


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=100_000, eval_interval=100_000)
    run = tmp_path / "dead"
    proc = subprocess.Popen([sys.executable, "-m", "seqlab", "train", str(config), "--out", str(run), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_while_running(proc, lambda: metric_lines(run) >= 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "trainer_state.json").exists()

    again = cli("train", config, "--out", run, "--device", "cpu")  # says how to go on
    assert_one_line_error(again)
    assert "before its first checkpoint" in again.stderr and f"--resume {run}" in again.stderr

    resumed = cli("train", "--resume", run, "--device", "cpu", "--json", "--set", "train.max_steps=12")
    assert resumed.exit_code == 0, resumed.stderr
    assert "training it again from step 0" in resumed.stderr
    assert json.loads(resumed.stdout)["step"] == 12
    steps = [r["step"] for r in metrics(run) if "train_loss" in r]
    assert steps == list(range(1, 13))  # the dead run's lines are gone, none twice
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 12


def test_resume_of_a_run_with_only_a_config_starts_it(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=4, eval_interval=2)
    run = tmp_path / "run"
    run.mkdir()
    from seqlab.config import load_config
    from seqlab.runs import RunDir

    RunDir(run).write_config(load_config(config))  # complete, as seqlab writes a run's config.yaml
    stale = run / ".model.safetensors.k3j_x9q2.tmp.safetensors"  # what a kill -9 mid-write leaves
    stale.write_bytes(b"half a tensor file")
    r = cli("train", "--resume", run, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert "from step 0 with its config.yaml" in r.stderr and "tokenizer" not in r.stderr.splitlines()[0]
    assert (run / "tokenizer.json").is_file() and (run / "fingerprint.json").is_file()
    assert not stale.exists()


# ----------------------------------------------------------------------------- fingerprint


@pytest.fixture
def killed_run(cli, tmp_path) -> Path:
    """A run with a checkpoint at step 10 and train.max_steps 40 in its config.yaml (as if stopped by Ctrl-C)."""
    config = tiny_config(tmp_path, max_steps=10)
    run = tmp_path / "run"
    assert cli("train", config, "--out", run, "--device", "cpu").exit_code == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["max_steps"] = 40  # allowed: as --set train.max_steps=40 would
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def test_config_yaml_stores_the_corpus_as_an_absolute_path_and_a_fingerprint(killed_run, tmp_path):
    assert yaml.safe_load((killed_run / "config.yaml").read_text())["data"]["corpus"] == str(tmp_path / "tiny.txt")
    fingerprint = json.loads((killed_run / "fingerprint.json").read_text())
    assert fingerprint["config"]["train.lr"] == 1e-3 and "train.max_steps" not in fingerprint["config"]
    (record,) = fingerprint["files"]
    assert record["path"] == str(tmp_path / "tiny.txt") and len(record["sha256"]) == 64
    assert json.loads((killed_run / "run.json").read_text())["cwd"] == str(tmp_path)


def test_resume_refuses_an_edited_config(cli, killed_run):
    cfg = yaml.safe_load((killed_run / "config.yaml").read_text())
    cfg["train"]["lr"] = 0.01
    cfg["model"]["dropout"] = 0.1
    (killed_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("train", "--resume", killed_run, "--device", "cpu")
    assert_one_line_error(r)
    assert "train.lr: 0.001 -> 0.01" in r.stderr and "model.dropout: 0.0 -> 0.1" in r.stderr
    assert "--init-from" in r.stderr


def test_resume_refuses_a_changed_corpus_but_not_a_touched_one(cli, killed_run, tmp_path):
    corpus = tmp_path / "tiny.txt"
    text = corpus.read_text()
    corpus.write_text(text.upper())
    r = cli("train", "--resume", killed_run, "--device", "cpu")
    assert_one_line_error(r)
    assert f"{corpus}'s content differs" in r.stderr and "--init-from" in r.stderr
    corpus.unlink()
    r = cli("train", "--resume", killed_run, "--device", "cpu")
    assert_one_line_error(r)
    assert f"{corpus} is gone" in r.stderr
    corpus.write_text(text)  # the same content again, with a new modification time
    r = cli("train", "--resume", killed_run, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["step"] == 40


def test_free_keys_may_change_on_resume(cli, killed_run):
    cfg = yaml.safe_load((killed_run / "config.yaml").read_text())
    cfg["decode"]["temperature"] = 0.5
    cfg["train"]["log_interval"] = 5
    (killed_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("train", "--resume", killed_run, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr


# ----------------------------------------------------------------------------- continuing a finished run


def test_a_finished_run_continues_with_set_max_steps(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=20, eval_interval=10)
    run = tmp_path / "run"
    assert cli("train", config, "--out", run, "--device", "cpu").exit_code == 0
    finished = cli("train", "--resume", run, "--device", "cpu")
    assert_one_line_error(finished)
    assert "finished at step 20" in finished.stderr and "--set train.max_steps=N" in finished.stderr

    for bad in ("train.lr=0.1", "model.n_embd=64"):
        r = cli("train", "--resume", run, "--set", bad)
        assert_one_line_error(r)
        assert bad.split("=")[0] in r.stderr and "--init-from" in r.stderr
    assert_one_line_error(cli("train", "--resume", run, "--set", "train.max_steps=10"))  # not beyond step 20

    r = cli("train", "--resume", run, "--device", "cpu", "--json", "--set", "train.max_steps=30")
    assert r.exit_code == 0, r.stderr
    assert "the learning rate stays at train.min_lr (0.0001) after step 20" in r.stderr
    assert json.loads(r.stdout)["step"] == 30
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 30
    rows = metrics(run)
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(1, 31))
    assert all(r["lr"] == pytest.approx(1e-4) for r in rows if "lr" in r and r["step"] > 20)
    assert checkpoint_step(run) == 30


def test_an_early_stopped_run_says_so(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=40, eval_interval=2, patience=2, lr=1e-12, min_lr=0)
    run = tmp_path / "run"
    assert cli("train", config, "--out", run, "--device", "cpu").exit_code == 0
    for extra in ((), ("--set", "train.max_steps=80")):
        r = cli("train", "--resume", run, "--device", "cpu", *extra)
        assert_one_line_error(r)
        assert "stopped early at step 6" in r.stderr and "--init-from" in r.stderr


def test_out_on_an_existing_run_points_to_resume(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=2, eval_interval=2)
    run = tmp_path / "run"
    assert cli("train", config, "--out", run, "--device", "cpu").exit_code == 0
    r = cli("train", config, "--out", run, "--device", "cpu")
    assert_one_line_error(r)
    assert "already holds a run" in r.stderr and f"--resume {run}" in r.stderr


def test_a_bad_config_leaves_no_directory(cli, tmp_path):
    config = tiny_config(tmp_path)
    r = cli("train", config, "--out", tmp_path / "new", "--device", "cpu", "--set", "model.context_length=4000")
    assert_one_line_error(r)
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- --init-from


def test_init_from_fine_tunes_a_language_model_on_another_corpus(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=10, eval_interval=10)
    source = tmp_path / "source"
    assert cli("train", config, "--out", source, "--device", "cpu").exit_code == 0
    (tmp_path / "new.txt").write_text("Zebras quietly queue in the meadow today. Ω\n" * 400)
    # lr 1e-12 leaves the weights where they started: the source run's best
    r = cli("train", config, "--init-from", source, "--set", "data.corpus=new.txt", "--out", tmp_path / "tuned",
            "--device", "cpu", "--json", "--set", "train.lr=1e-12", "--set", "train.min_lr=0")
    assert r.exit_code == 0, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("--init-from")]
    rate = float(line.split("tokens, ")[1].split("%")[0])
    assert 0 < rate < 10  # the Greek letters: not in tinyshakespeare's characters
    assert (tmp_path / "tuned" / "tokenizer.json").read_text() == (source / "tokenizer.json").read_text()
    info = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert info["init_from"]["run"] == str(source) and info["init_from"]["weights"].endswith("best.safetensors")
    tuned, best = read_tensors(tmp_path / "tuned" / "model.safetensors")[0], read_tensors(source / "best.safetensors")[0]
    assert tuned.keys() == best.keys()
    for name, weight in best.items():
        torch.testing.assert_close(tuned[name], weight, rtol=0, atol=1e-6)


def test_init_from_refuses_another_model_naming_the_keys(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=2, eval_interval=2)
    source = tmp_path / "source"
    assert cli("train", config, "--out", source, "--device", "cpu").exit_code == 0
    r = cli("train", config, "--init-from", source, "--set", "model.n_embd=64", "--out", tmp_path / "x")
    assert_one_line_error(r)
    assert "model.n_embd 64 here, 32 there" in r.stderr
    assert not (tmp_path / "x").exists()
    for args in (("--init-from", tmp_path / "missing", "--out", tmp_path / "x"),
                 ("--init-from", source, "--out", source)):
        assert_one_line_error(cli("train", config, *args))
    assert_one_line_error(cli("train", "--resume", source, "--init-from", source))


def test_init_from_fine_tunes_a_seq2seq_chatbot_on_ones_own_pairs(cli, tmp_path):
    def pairs(path: Path, rows: list[tuple[str, str]]) -> Path:
        path.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in rows))
        return path

    words = ("red", "green", "blue", "gold", "grey", "pink")
    base = pairs(tmp_path / "base.jsonl", [(f"say {w} {n}", f"{n} {w}") for w in words for n in ("one", "two", "six")])
    mine = pairs(tmp_path / "mine.jsonl", [(f"tell {w} {n}", f"{w} {n} please") for w in words for n in ("one", "two")])
    config = tmp_path / "s2s.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 3, "data": {"corpus": str(base), "task": "pairs", "tokenizer": "word", "val_fraction": 0.25},
        "model": {"arch": "seq2seq_rnn", "cell": "gru", "attention": "luong-dot", "n_layer": 1, "n_embd": 16,
                  "hidden_size": 16},
        "train": {"batch_size": 4, "max_steps": 4, "eval_interval": 2, "warmup_steps": 1, "samples": 0}}))
    assert cli("train", config, "--out", tmp_path / "bot", "--device", "cpu").exit_code == 0
    r = cli("train", config, "--init-from", tmp_path / "bot", "--set", f"data.corpus={mine}", "--out",
            tmp_path / "mybot", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert "unknown to its tokenizer" in r.stderr and json.loads(r.stdout)["step"] == 4
    assert (tmp_path / "mybot" / "tokenizer.json").read_text() == (tmp_path / "bot" / "tokenizer.json").read_text()


# ----------------------------------------------------------------------------- `data prepare --out RUN` then train


def test_train_into_a_directory_holding_prepared_data_uses_it(cli, tmp_path):
    config = tiny_config(tmp_path, max_steps=2, eval_interval=2)
    run = tmp_path / "run"
    assert cli("data", "prepare", "tiny.txt", "--preset", config, "--seed", "7", "--out", run).exit_code == 0
    (entry,) = (run / "prepared").iterdir()
    r = cli("train", config, "--out", run, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert f"using the data prepared in {entry}" in r.stderr
    assert [p.name for p in (run / "prepared").iterdir()] == [entry.name]
    assert not any((tmp_path / "cache").rglob("meta.json"))  # the user cache was not used

    other = tmp_path / "other"  # prepared with another seed: prepared again, saying so
    assert cli("data", "prepare", "tiny.txt", "--preset", config, "--seed", "1", "--out", other).exit_code == 0
    r = cli("train", config, "--out", other, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert "holds data prepared with other settings" in r.stderr


# ----------------------------------------------------------------------------- seqlab eval of a run whose corpus moved


def test_eval_of_a_run_from_another_directory_and_with_its_corpus_gone(cli, tmp_path, monkeypatch):
    config = tiny_config(tmp_path, max_steps=2, eval_interval=2)
    run = tmp_path / "run"
    assert cli("train", config, "--out", run, "--device", "cpu").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = cli("eval", run, "--limit", "2", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["perplexity"] > 1

    corpus = tmp_path / "tiny.txt"
    corpus.write_text(corpus.read_text().replace("e", "a"))
    r = cli("eval", run, "--limit", "2", "--device", "cpu", "--json")
    assert r.exit_code == 0 and "changed since the run was trained" in r.stderr

    corpus.rename(tmp_path / "moved.txt")
    r = cli("eval", run, "--limit", "2", "--device", "cpu")
    assert_one_line_error(r)
    assert str(corpus) in r.stderr and "is gone" in r.stderr and "--data" in r.stderr
    r = cli("eval", run, "--limit", "2", "--device", "cpu", "--data", tmp_path / "moved.txt", "--json")
    assert r.exit_code == 0, r.stderr


def test_eval_of_an_old_run_with_a_relative_corpus_path_suggests_data(cli, tmp_path, monkeypatch):
    config = tiny_config(tmp_path, max_steps=2, eval_interval=2)
    run = tmp_path / "run"
    assert cli("train", config, "--out", run, "--device", "cpu").exit_code == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["corpus"] = "tiny.txt"  # as runs stored it before
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = cli("eval", run, "--limit", "2", "--device", "cpu")
    assert_one_line_error(r)
    assert "'tiny.txt'" in r.stderr and "relative" in r.stderr and "--data" in r.stderr
