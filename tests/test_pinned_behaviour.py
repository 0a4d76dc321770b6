"""Behaviour pinned across refactors: a few training steps of two presets and decoding from them give
exactly the losses and texts they gave when these values were recorded (2026-12-06, torch 2.13.0 CPU,
one thread). A refactor that says "behaviour unchanged" must keep this file passing unedited; a change
that means to alter numerics updates these values in its own commit, saying why."""

from __future__ import annotations

import json

import pytest
from conftest import shared_data_file

SMALL = ["train.max_steps=6", "train.eval_interval=3", "train.log_interval=1", "train.batch_size=8",
         "train.eval_batches=2", "train.samples=0", "train.compile=false"]
PRESETS = {
    "shakespeare-char-transformer-cpu": (
        ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.context_length=32"], "ROMEO:", 12,
        [4.234254837036133, 4.229178428649902, 4.222965240478516],
        ["::::::::::::", "\n\n\n333333333", "fN,jjjtAoSK-"]),
    "chatbot-gru-luong-cpu": (
        ["model.n_embd=32", "model.hidden_size=32"], "Hello", 8,
        [8.171693801879883, 7.800549507141113, 7.829761981964111],
        [" powered million stand bragging braggingHal wooden r", " million stand bragging bragging braggingHal wooden r",
         " standPeoplePOST BashRobotics is find Queue"]),
}
DECODING = [["--greedy"], ["--greedy", "--num-beams", "3"],
            ["--do-sample", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7"]]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("preset", PRESETS)
def test_training_losses_and_decoded_texts_are_unchanged(cli, tmp_path, preset):
    shared_data_file("tinyshakespeare.txt")
    model_sets, prompt, max_new, losses, texts = PRESETS[preset]
    run = tmp_path / "run"
    sets = [a for kv in SMALL + model_sets for a in ("--set", kv)]
    r = cli("train", preset, *sets, "--out", run, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["train_loss"] for row in rows if "train_loss" in row][:3] == pytest.approx(losses, rel=1e-6, abs=0)
    got = []
    for args in DECODING:
        r = cli("generate", run, "-p", prompt, "--max-new-tokens", str(max_new), *args, "--json", "--device", "cpu")
        assert r.exit_code == 0, r.stderr
        got.append(json.loads(r.stdout)["results"][0]["generations"][0]["text"])
    assert got == texts
