"""`seqlab eval`: metrics against their references (sacrebleu, the model's own loss), LM and seq2seq runs, errors."""

from __future__ import annotations

import json
import math

import pytest
import sacrebleu
import torch
from conftest import assert_one_line_error
from tiny_runs import (
    LM,
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_pairs_corpus,
    write_text_corpus,
)

KEYS = ["perplexity", "bleu", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "self_bleu", "avg_len",
        "examples"]


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_s2s")
    corpus = write_pairs_corpus(root / "pairs.jsonl")
    return make_run(root / "run", config_for(corpus, SEQ2SEQ, "pairs"))


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_lm")
    corpus = write_text_corpus(root / "lines.txt")
    return make_run(root / "run", config_for(corpus, LM, "lm", tokenizer="char"))


def test_seq2seq_json_keys_perplexity_and_bleu_match_references(cli, seq2seq_run):
    from seqlab.data.prepare import prepare_data
    from seqlab.eval.evaluate import examples_from_split, generate_texts
    from seqlab.models.loading import load_model_from_run
    from seqlab.train.pair_batches import collate_pairs

    result = cli("eval", seq2seq_run, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert list(metrics) == KEYS
    model, tok, cfg = load_model_from_run(seq2seq_run)
    val = prepare_data(cfg.data, cfg.seed, tokenizer=tok).splits["val"]
    assert metrics["examples"] == len(val.pairs)
    with torch.no_grad():  # the model's own mean cross-entropy, as the seq2seq recipe computes it
        loss = model(*collate_pairs(val.pairs, tok.pad_id, tok.bos_id, tok.eos_id))[1]
    assert metrics["perplexity"] == pytest.approx(math.exp(loss.item()), rel=1e-4)
    examples = examples_from_split("pairs", val, tok)
    hyps = generate_texts(model, tok, examples.prompts, {"max_new_tokens": cfg.data.max_target_len})
    refs = [t for _, t in val.texts]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)


def test_lm_run_scores_continuations_and_limit(cli, lm_run):
    result = cli("eval", lm_run, "--device", "cpu", "--limit", "5", "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert list(metrics) == KEYS and metrics["examples"] == 5
    assert 1.0 < metrics["perplexity"] < 100.0
    assert 0.0 <= metrics["rougeL"] <= 1.0 and 0.0 <= metrics["bleu"] <= 100.0


def test_lm_perplexity_is_the_stream_nll(cli, lm_run):
    from seqlab.data.prepare import prepare_data
    from seqlab.models.loading import load_model_from_run

    metrics = json.loads(cli("eval", lm_run, "--device", "cpu", "--limit", "2", "--json").stdout)
    model, tok, cfg = load_model_from_run(lm_run)
    stream = prepare_data(cfg.data, cfg.seed, tokenizer=tok).splits["val"].ids[:2 * 32 + 1]
    with torch.no_grad():
        _, loss = model(stream[None, :-1][:, :32], stream[None, 1:][:, :32])
        _, loss2 = model(stream[None, 32:-1], stream[None, 33:])
    assert metrics["perplexity"] == pytest.approx(math.exp((loss.item() + loss2.item()) / 2), rel=1e-4)


def test_human_report_and_other_data(cli, seq2seq_run, tmp_path):
    other = write_pairs_corpus(tmp_path / "other.jsonl", [("hello", "hi there")], copies=2)
    result = cli("eval", seq2seq_run, "--data", other, "--device", "cpu", "--num-beams", "2")
    assert result.exit_code == 0, result.stderr
    assert "perplexity" in result.stdout and "reference: hi there" in result.stdout
    assert "examples    2" in result.stdout  # --data evaluates the whole corpus


@pytest.mark.parametrize("args,message", [
    (["--split", "train"], "unknown split"),
    (["--split", "test"], "no test split"),
    (["--limit", "0"], "--limit"),
    (["--lang", "fr"], "--lang"),
    (["--temperature", "0", "--do-sample"], "temperature"),
])
def test_bad_input_is_one_line_error(cli, seq2seq_run, args, message):
    result = cli("eval", seq2seq_run, "--device", "cpu", *args)
    assert_one_line_error(result)
    assert message in result.stderr


def test_not_a_run_is_one_line_error(cli, tmp_path):
    result = cli("eval", tmp_path / "missing")
    assert_one_line_error(result)


def test_labelled_lm_run_generates_from_each_label(cli, tmp_path):
    rows = [{"text": f"{word} {word}", "label": label} for label, words in
            (("a", ["apple", "avocado", "apricot", "almond"]), ("b", ["banana", "berry", "bean", "basil"]))
            for word in words]
    corpus = tmp_path / "labelled.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows * 3), encoding="utf-8")
    config = config_for(corpus, LM, "labelled", tokenizer="char")
    config["data"]["split"] = "random"
    run = make_run(tmp_path / "run", config)
    result = cli("eval", run, "--device", "cpu", "--split", "all", "--max-new-tokens", "6", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["examples"] == 24 and metrics["perplexity"] > 1


def test_chinese_run_is_scored_on_characters(tmp_path):
    from seqlab.eval.run_eval import evaluate_run
    from seqlab.eval.score import score_texts
    from seqlab.models.loading import load_model_from_run

    config = config_for("chatterbot/chinese", SEQ2SEQ, "pairs", tokenizer="char")  # data.lang auto: detected
    run = make_run(tmp_path / "zh", config)
    model, tok, cfg = load_model_from_run(run)
    metrics, examples, hyps = evaluate_run(model, tok, cfg, None, None, 6, 5, {}, None)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(examples.references))
    expected = score_texts(hyps, [examples.references], "zh")
    assert metrics["avg_len"] == expected["avg_len"] == sum(len(h.replace(" ", "")) for h in hyps) / len(hyps)
    assert metrics["rougeL"] == expected["rougeL"]


def test_evaluate_run_is_library_code_the_command_uses():
    import seqlab.cli.eval as command
    from seqlab.eval.run_eval import evaluate_run

    assert command.evaluate_run is evaluate_run  # the command is a thin adapter over the library function
