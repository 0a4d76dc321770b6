"""`seqlab calibrate RUN --data HELDOUT` on a FAQ chatbot trained in the test (tests/faq.py), and the
confidence `seqlab generate --json` reports."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import assert_one_line_error
from faq import faq_config, heldout_pairs, write_faq
from tiny_runs import (
    LM,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    train_run,
    write_text_corpus,
)

from seqlab.eval.calibrate import answers, threshold_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def faq(tmp_path_factory):
    """(the run, the held-out file): a GRU chatbot that learnt the FAQ (about 6 s), and its rewordings."""
    root = tmp_path_factory.mktemp("faq")
    train, heldout = write_faq(root)
    return train_run(root / "run", faq_config(train)), heldout


def test_json_result_and_its_threshold_reproduce_the_cut(cli, faq, tmp_path):
    run, heldout = faq
    result = cli("calibrate", run, "--data", heldout, "--out", tmp_path, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    replies = data["replies"]
    assert data["pairs"] == len(replies) == len(heldout_pairs()) and data["target_coverage"] == 0.8
    assert [(r["question"], r["reference"]) for r in replies] == heldout_pairs()
    assert all(r["confidence"] <= 0 and "\n" not in r["reply"] for r in replies)
    off = data["no_fallback"]
    assert off["answered"] == off["total"] == len(replies) and off["right"] == sum(r["right"] for r in replies)
    assert 0 < off["right"] < len(replies), "the bot should be right on some rewordings and wrong on others"

    chosen, x = data["chosen"], data["threshold"]
    assert x is not None and chosen["coverage"] >= 0.8
    kept = [r["right"] for r in replies if answers(x, r["confidence"])]
    assert (len(kept), sum(kept)) == (chosen["answered"], chosen["right"])
    assert chosen["accuracy"] == pytest.approx(sum(kept) / len(kept), abs=1e-6) and chosen["accuracy"] > off["accuracy"]
    eligible = [c for c in data["cuts"] if c["coverage"] >= 0.8]
    assert chosen["accuracy"] == max(c["accuracy"] for c in eligible)  # the best at the target coverage

    png = tmp_path / "calibration.png"
    assert data["png"] == str(png) and png.read_bytes().startswith(PNG_MAGIC)


def test_the_table_and_how_to_use_it(cli, faq):
    run, heldout = faq
    result = cli("calibrate", run, "--data", heldout, "--coverage", "0.5", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{len(heldout_pairs())} held-out pairs")
    table = lines[lines.index(next(ln for ln in lines if "threshold" in ln and "coverage" in ln)) + 1:]
    rows = table[:table.index("")]
    assert rows[0].split()[:2] == ["off", "100.0%"]
    marked = [r for r in rows if r.startswith("*")]
    assert len(marked) == 1
    x = marked[0].split()[1]
    assert f"--fallback-threshold {x}" in result.stdout and f"threshold: {x}" in result.stdout
    assert float(marked[0].split()[2].rstrip("%")) >= 50.0
    assert (run / "calibration.png").read_bytes().startswith(PNG_MAGIC)  # --out defaults to the run


def test_generate_json_reports_each_reply_s_confidence(cli, faq):
    run, _ = faq
    result = cli("generate", run, "--prompt", "when are you open", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    (generation,) = json.loads(result.stdout)["results"][0]["generations"]
    assert generation["text"] == "we are open from nine to five"
    assert -0.5 < generation["confidence"] <= 0  # learnt by heart: sure of it
    beams = json.loads(cli("generate", run, "--prompt", "when are you open", "--json", "--device", "cpu",
                           "--num-beams", "3").stdout)["results"][0]["generations"][0]
    assert beams["confidence"] == beams["score"]


def test_a_language_model_replies_up_to_the_line_break(cli, tmp_path):
    corpus = write_text_corpus(tmp_path / "t.txt", ["when are you open", "we are open from nine to five"])
    run = make_run(tmp_path / "lm", config_for(corpus, LM, "lm", tokenizer="word"))
    heldout = tmp_path / "heldout.tsv"
    heldout.write_text("when are you open\twe are open from nine to five\nwhen\tfive\n", encoding="utf-8")
    result = cli("calibrate", run, "--data", heldout, "--json", "--device", "cpu", "--max-new-tokens", "6")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["pairs"] == 2 and all("\n" not in r["reply"] for r in data["replies"])


@pytest.mark.parametrize("content, args, message", [
    (None, (), "no such file"),
    ("", (), "empty"),
    ("a question\tan answer\tand more\n", (), "line 1 has 3 tab-separated fields"),
    ("q\ta\n", ("--coverage", "0"), "coverage"),
    ("q\ta\n", ("--coverage", "1.5"), "coverage"),
    ("q\ta\n", ("--batch-size", "0"), "batch-size"),
])
def test_bad_input_is_one_line(cli, faq, tmp_path, content, args, message):
    run, _ = faq
    heldout = tmp_path / "heldout.tsv"
    if content is not None:
        heldout.write_text(content, encoding="utf-8")
    result = cli("calibrate", run, "--data", heldout, *args, "--device", "cpu")
    assert_one_line_error(result)
    assert message in result.stderr


def test_text_data_is_not_pairs(cli, faq, tmp_path):
    run, _ = faq
    text = tmp_path / "notes.txt"
    text.write_text("just some text\n", encoding="utf-8")
    result = cli("calibrate", run, "--data", text, "--device", "cpu")
    assert_one_line_error(result)
    assert "pairs" in result.stderr


def test_a_threshold_that_is_not_a_number_is_one_line(cli, faq, tmp_path):
    result = cli("config", "--set", "chat.fallback.threshold=sure")
    assert_one_line_error(result)
    assert "chat.fallback.threshold" in result.stderr
    run, heldout = faq
    copy = shutil.copytree(run, tmp_path / "run")
    config = copy / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "    threshold: null\n" in text
    config.write_text(text.replace("    threshold: null\n", "    threshold: sure\n"), encoding="utf-8")
    result = cli("calibrate", copy, "--data", heldout, "--device", "cpu")
    assert_one_line_error(result)
    assert "chat.fallback.threshold: expected float" in result.stderr


def test_threshold_text_is_what_the_config_reads(cli):
    for x in (-0.06, -0.00005, -1.25):
        result = cli("config", "--set", f"chat.fallback.threshold={threshold_text(x)}", "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["chat"]["fallback"]["threshold"] == x
