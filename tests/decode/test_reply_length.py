"""The reply cap when decode.max_new_tokens is unset: a seq2seq run's longest training target + a margin."""

from __future__ import annotations

import json

import pytest

from seqlab.config import Config, DataConfig, DecodeConfig
from seqlab.decode import GenerationOptions
from seqlab.decode.reply_length import reply_cap, run_max_new_tokens


def test_the_margin_is_a_quarter_and_at_least_eight():
    assert [reply_cap(n) for n in (1, 4, 32, 33, 140)] == [9, 12, 40, 42, 175]


def test_unset_means_from_the_data_for_pairs_and_200_otherwise(tmp_path):
    pairs = Config(data=DataConfig(task="pairs", max_target_len=24))
    assert pairs.decode.max_new_tokens is None
    assert run_max_new_tokens(pairs) == reply_cap(24)  # no run: the longest a target could be
    (tmp_path / "run.json").write_text(json.dumps({"seed": 1, "longest_target": 17}))
    assert run_max_new_tokens(pairs, tmp_path) == reply_cap(17)
    explicit = Config(data=DataConfig(task="pairs"), decode=DecodeConfig(max_new_tokens=30))
    assert run_max_new_tokens(explicit, tmp_path) == 30
    assert Config().decode.max_new_tokens == 200 == run_max_new_tokens(Config())  # a language model
    (tmp_path / "run.json").write_text("{damaged")
    assert run_max_new_tokens(pairs, tmp_path) == reply_cap(24)


def test_an_unset_cap_is_still_a_valid_decode_config():
    assert GenerationOptions.from_config(DecodeConfig()).max_new_tokens == GenerationOptions().max_new_tokens
    with pytest.raises(Exception, match="max_new_tokens"):
        DecodeConfig(max_new_tokens=0)
