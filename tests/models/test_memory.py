"""seqlab.models.memory: the size estimate matches the built models, and absurd sizes are refused fast (issue 15)."""

from __future__ import annotations

import itertools
import time

import pytest
import yaml
from conftest import assert_one_line_error

from seqlab.config import ModelConfig, TrainConfig
from seqlab.errors import ConfigError
from seqlab.models import build_model
from seqlab.models.memory import check_memory, human_bytes, parameter_count

IDS = {"pad_id": 0, "bos_id": 1, "eos_id": 2}


def stored_values(model) -> int:
    """Parameters and buffers, a tied weight once: what the estimate counts."""
    unique = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() for t in unique.values())


def transformer_configs():
    for arch, positions, bias, tie, share, n_layer in itertools.product(
            ["transformer_lm", "seq2seq_transformer"], ["learned", "rotary", "sinusoidal"], [True, False],
            [True, False], [True, False], [1, 2]):
        if (arch == "transformer_lm") == (positions == "sinusoidal") or (arch == "transformer_lm" and not share):
            continue
        if arch == "seq2seq_transformer" and positions == "rotary":
            continue
        yield ModelConfig(arch=arch, n_layer=n_layer, n_embd=24, n_head=2, context_length=20, positions=positions,
                          bias=bias, tie_embeddings=tie, share_embeddings=share)


def recurrent_configs():
    for cell, hidden, tie, n_layer in itertools.product(["rnn", "gru", "lstm"], [16, 24], [True, False], [1, 3]):
        yield ModelConfig(arch="rnn_lm", cell=cell, n_layer=n_layer, n_embd=16, hidden_size=hidden,
                          tie_embeddings=tie)
    for attention, bidirectional, feed, tie, share in itertools.product(
            ["none", "bahdanau", "luong-dot", "luong-general"], [True, False], [True, False], [True, False],
            [True, False]):
        yield ModelConfig(arch="seq2seq_rnn", cell="lstm" if feed else "gru", n_layer=2, n_embd=16, hidden_size=16,
                          attention=attention, bidirectional=bidirectional, input_feeding=feed, tie_embeddings=tie,
                          share_embeddings=share)


@pytest.mark.parametrize("cfg", [*transformer_configs(), *recurrent_configs()], ids=str)
def test_the_estimate_counts_exactly_what_the_model_holds(cfg):
    assert parameter_count(cfg, 37) == stored_values(build_model(cfg, 37, **IDS))


@pytest.mark.parametrize("key, value", [("n_embd", 10**9), ("n_layer", 10**6), ("context_length", 10**12),
                                        ("n_embd", 10**18)])
def test_an_absurd_model_is_refused_before_anything_is_built(key, value):
    cfg = ModelConfig(arch="transformer_lm", n_head=2, **{key: value})
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        build_model(cfg, 100, **IDS)
    assert time.perf_counter() - start < 1.0
    message = str(e.value)
    assert message.startswith(f"model.{key}={value} would need ~") and "for its parameters" in message
    assert "this machine has" in message or "this container has" in message
    assert f"choose a smaller model.{key}" in message and "\n" not in message


def test_the_training_check_counts_adam_and_one_micro_batch():
    cfg = ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=32, context_length=64)
    check_memory(cfg, 100, "cpu", TrainConfig(batch_size=64))  # small: fine
    with pytest.raises(ConfigError, match=r"^train.batch_size=1000000000000 would need ~.* to train .*choose a "
                                          r"smaller train.batch_size \(the default is 32\)"):
        check_memory(cfg, 100, "cpu", TrainConfig(batch_size=10**12))


def test_the_training_check_counts_a_separate_source_vocabulary():
    cfg = ModelConfig(arch="seq2seq_rnn", n_layer=1, n_embd=16, hidden_size=16, share_embeddings=False)
    check_memory(cfg, 100, "cpu", TrainConfig(batch_size=2))  # small: fine
    with pytest.raises(ConfigError, match="to train"):
        check_memory(cfg, 100, "cpu", TrainConfig(batch_size=2), src_vocab_size=10**15)


def test_human_bytes():
    assert [human_bytes(n) for n in (12, 1234567, 48e18, 3e30)] == ["12 bytes", "1.2 MB", "48.0 EB", "3000000000000.0 EB"]


@pytest.mark.parametrize("overrides", [["model.n_embd=1000000000"], ["model.n_layer=1000000"],
                                       ["train.batch_size=1000000000000"]])
def test_seqlab_train_refuses_absurd_sizes_in_one_line_and_writes_no_run(cli, tmp_path, overrides):
    from tiny_runs import LM, config_for, write_text_corpus

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(config_for(write_text_corpus(tmp_path / "lines.txt"), LM, "lm")))
    args = [a for o in overrides for a in ("--set", o)]
    result = cli("train", config, "--out", tmp_path / "run", "--device", "cpu", *args)
    assert_one_line_error(result)
    assert f"{overrides[0].split('=')[0]}=" in result.stderr and "would need ~" in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_seq2seq_transformer_with_an_absurd_position_table_is_refused(cli, tmp_path):
    from tiny_runs import config_for, write_pairs_corpus

    model = {"arch": "seq2seq_transformer", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 10**12}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(config_for(write_pairs_corpus(tmp_path / "pairs.jsonl"), model, "pairs")))
    result = cli("train", config, "--out", tmp_path / "run", "--device", "cpu")
    assert_one_line_error(result)
    assert "model.context_length=1000000000000 would need ~" in result.stderr
