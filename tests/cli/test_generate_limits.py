"""`seqlab generate` with absurd --max-new-tokens and --seed: a bounded answer or one line, fast (issue 15)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import assert_one_line_error
from tiny_runs import LM, SEQ2SEQ, config_for, make_run, one_thread, write_pairs_corpus, write_text_corpus  # noqa: F401

HUGE = "1000000000000"  # 10^12 tokens: 8 TB of token ids if preallocated
RNN_LM = {"arch": "rnn_lm", "cell": "gru", "n_layer": 1, "n_embd": 16, "hidden_size": 16}
SEQ2SEQ_TRANSFORMER = {"arch": "seq2seq_transformer", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 16}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    lines, pairs = write_text_corpus(root / "lines.txt"), write_pairs_corpus(root / "pairs.jsonl")
    return {"transformer_lm": make_run(root / "lm", config_for(lines, LM, "lm")),
            "seq2seq_transformer": make_run(root / "s2st", config_for(pairs, SEQ2SEQ_TRANSFORMER, "pairs")),
            "rnn_lm": make_run(root / "rnn", config_for(lines, RNN_LM, "lm")),
            "seq2seq_rnn": make_run(root / "s2s", config_for(pairs, SEQ2SEQ, "pairs"))}


@pytest.mark.parametrize("beams", ["1", "2"])
@pytest.mark.parametrize("arch, context", [("transformer_lm", 32), ("seq2seq_transformer", 16)])
def test_a_transformer_stops_at_its_context(cli, runs, arch, context, beams):
    start = time.perf_counter()
    result = cli("generate", runs[arch], "--prompt", "the king", "--max-new-tokens", HUGE, "--num-beams", beams,
                 "--greedy", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    assert time.perf_counter() - start < 30
    generation = json.loads(result.stdout)["results"][0]["generations"][0]
    assert len(generation["text"].split()) < context


@pytest.mark.parametrize("beams", ["1", "2"])
@pytest.mark.parametrize("arch", ["rnn_lm", "seq2seq_rnn"])
def test_a_recurrent_model_refuses_more_than_its_cap_in_one_line(cli, runs, arch, beams):
    start = time.perf_counter()
    result = cli("generate", runs[arch], "--prompt", "the king", "--max-new-tokens", HUGE, "--num-beams", beams,
                 "--device", "cpu")
    assert_one_line_error(result)
    assert time.perf_counter() - start < 30
    assert "max_new_tokens 1,000,000,000,000 is more than a recurrent model" in result.stderr
    assert "at most 100,000" in result.stderr and "--max-new-tokens" in result.stderr


def test_a_recurrent_model_generates_up_to_its_cap(runs):
    import torch

    from seqlab.decode import generate
    from seqlab.decode.generate import RECURRENT_MAX_NEW_TOKENS
    from seqlab.errors import SeqlabError
    from seqlab.models.loading import load_model_from_run

    model, tokenizer, _ = load_model_from_run(runs["rnn_lm"], "cpu")
    ids = torch.tensor([tokenizer.encode("the king")])
    assert generate(model, ids, max_new_tokens=5, do_sample=False).sequences.shape == (1, ids.shape[1] + 5)
    with pytest.raises(SeqlabError, match="at most 100,000"):
        generate(model, ids, max_new_tokens=RECURRENT_MAX_NEW_TOKENS + 1, do_sample=False)


@pytest.mark.parametrize("seed", ["9223372036854775808", "99999999999999999999999", "-1"])
def test_seeds_outside_0_to_2_63_are_one_line(cli, runs, seed):
    result = cli("generate", runs["transformer_lm"], "--prompt", "the", "--max-new-tokens", "2", "--seed", seed)
    assert_one_line_error(result)
    assert f"--seed must be a whole number in [0, 2^63 - 1 = 9223372036854775807], got {seed}" in result.stderr


def test_the_largest_seed_works(cli, runs):
    result = cli("generate", runs["transformer_lm"], "--prompt", "the", "--max-new-tokens", "2",
                 "--seed", str(2**63 - 1))
    assert result.exit_code == 0, result.stderr


def test_seed_everything_checks_its_seed():
    from seqlab.device import seed_everything
    from seqlab.errors import ConfigError

    with pytest.raises(ConfigError, match="2\\^63"):
        seed_everything(2**64)
