"""`seqlab seqgan oracle --set FIELD=VALUE`: nan/inf, sizes beyond 64 bits, python tags and bad YAML are one line
(issue 15); `seqlab seqgan train/sample --seed` outside [0, 2^63) too."""

from __future__ import annotations

import pytest
from conftest import assert_one_line_error

from seqlab.errors import ConfigError
from seqlab.train.seqgan_table import resolve_protocol


@pytest.mark.parametrize("pair, words", [
    ("g_lr=.nan", "--set g_lr: must be a finite number, got nan"),
    ("d_lr=.inf", "--set d_lr: must be a finite number, got inf"),
    ("rollout_rate=-.inf", "--set rollout_rate: must be a finite number"),
    ("num_real=100000000000000000000", "--set num_real: 100000000000000000000 does not fit in 64 bits"),
    ("g_lr=!!python/object/apply:os.system [touch PWNED]", "--set g_lr: python tags are not allowed"),
    ("g_lr=[", "--set g_lr: expected float, got '['"),
])
def test_bad_protocol_values_are_refused(pair, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        resolve_protocol("small", [pair])
    assert words in str(e.value)
    assert not (tmp_path / "PWNED").exists()


def test_good_protocol_values_still_apply():
    protocol = resolve_protocol("small", ["g_lr=0.02", "adv_rounds=3", "rollout_rate=0.5"])
    assert (protocol.g_lr, protocol.adv_rounds, protocol.rollout_rate) == (0.02, 3, 0.5)


def test_the_cli_prints_them_in_one_line(cli, tmp_path):
    result = cli("seqgan", "oracle", "--out", tmp_path / "out", "--preset", "small", "--set", "g_lr=.nan")
    assert_one_line_error(result)
    assert "g_lr" in result.stderr and not (tmp_path / "out").exists()
    result = cli("seqgan", "sample", tmp_path / "nowhere", "--seed", str(2**64))
    assert_one_line_error(result)
    assert "--seed must be a whole number in [0, 2^63" in result.stderr
