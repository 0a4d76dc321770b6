"""`seqlab demo --quick`: the whole main job in seconds (stats, two trainings, one table, samples), idempotent."""

from __future__ import annotations

import json

from conftest import assert_one_line_error

METRICS = {"perplexity", "bleu", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "self_bleu", "avg_len",
           "examples"}


def test_quick_demo_trains_evaluates_samples_then_reuses(cli, tmp_path):
    out = tmp_path / "runs"
    result = cli("demo", "--quick", "--out-dir", out, "--device", "cpu", "--json", stdin="")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    corpora = {row["name"]: row for row in report["corpora"]}
    assert corpora["chatterbot/english"]["examples"] > 2300
    assert corpora["tang300"]["examples"] == 313 and corpora["tang-song"]["labels"] == 2
    assert set(report["runs"]) == {"chatbot", "shakespeare-char"}
    for name, entry in report["runs"].items():
        assert set(entry["eval"]) == METRICS and entry["eval"]["perplexity"] > 1
        assert entry["train"]["reused"] is False and entry["train"]["step"] == 4
        assert (out / f"demo-{name}" / "best.safetensors").is_file()
    assert all(set(outputs) == {"greedy", "beam 5", "sample"} for outputs in report["samples"]["chatbot"].values())
    lm_samples = report["samples"]["shakespeare-char"]  # the LM: sampled text shown, greedy in one line
    assert all(set(outputs) == {"sample", "greedy"} for outputs in lm_samples.values())
    assert sorted(p.name for p in out.iterdir()) == ["demo-chatbot", "demo-shakespeare-char"]  # no temporaries

    again = cli("demo", "--quick", "--out-dir", out, "--device", "cpu", "--reuse", stdin="")  # piped: no chat
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("reused: trained 4 steps") == 2
    assert "Evaluation" in again.stdout and "shakespeare-char" in again.stdout and "beam 5" in again.stdout
    assert "the most likely whole reply" in again.stdout and "greedy instead" in again.stdout
    assert f"seqlab chat {out / 'demo-chatbot'}" in again.stdout and "docs/decoding.md" in again.stdout
    table = again.stdout.split("Evaluation")[1]
    assert f"{report['runs']['chatbot']['eval']['perplexity']:.2f}" in table


def test_out_dir_that_is_a_file_is_one_line_error(cli, tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    result = cli("demo", "--quick", "--out-dir", tmp_path / "runs", "--device", "cpu", stdin="")
    assert_one_line_error(result)
