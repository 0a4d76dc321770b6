"""The whole synthetic-oracle pipeline on a tiny configuration: CLI, table, curve, exact resume, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from seqlab.models.oracle import build_oracle, random_oracle_params
from seqlab.train.seqgan import PRESETS, OracleExperiment

TINY = {"num_real": 48, "batch_size": 16, "pretrain_epochs": 2, "mle_epochs": 3, "ss_epochs": 2,
        "d_pretrain_iters": 1, "d_negatives": 32, "d_epochs": 1, "adv_rounds": 2, "d_iters_per_round": 1,
        "num_rollouts": 2, "pg_bleu_pretrain_epochs": 2, "pg_bleu_rounds": 2, "eval_samples": 48,
        "curve_samples": 32, "curve_every_epochs": 1, "curve_every_rounds": 1}
TINY_SET = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_table_end_to_end(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("seqgan", "oracle", "--preset", "small", *TINY_SET, "--out", out, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    table = json.loads(result.stdout)
    assert set(table["methods"]) == {"random", "mle", "ss", "pg_bleu", "seqgan"}
    assert table["paper"] == {"random": 10.310, "mle": 9.038, "ss": 8.985, "pg_bleu": 8.946, "seqgan": 8.736}
    for row in table["methods"].values():
        assert np.isfinite(row["nll_oracle"]) and row["nll_oracle"] > 0
    assert json.loads((out / "table.json").read_text()) == table
    assert (out / "learning_curve.png").stat().st_size > 1000
    timings = table["methods"]["seqgan"]["timings"]
    assert timings["adversarial_s"] > 0 and timings["d_pretrain_s"] > 0
    # a second call resumes everything from the run directory: same table, nothing retrained
    again = cli("seqgan", "oracle", "--preset", "small", *TINY_SET, "--out", out, "--methods", "mle,seqgan", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["methods"]["seqgan"]["nll_oracle"] == table["methods"]["seqgan"]["nll_oracle"]
    # the human table shows the paper's numbers beside
    text = cli("seqgan", "oracle", "--preset", "small", *TINY_SET, "--out", out, "--methods", "seqgan")
    assert text.exit_code == 0 and "8.736" in text.stdout


def test_seqgan_resumes_exactly_after_an_interruption(tmp_path):
    # a delayed-copy rollout policy (r = 0.8), so its own weights must be restored too
    protocol = PRESETS["small"].replace(**{**TINY, "adv_rounds": 3}, checkpoint_every_s=0.0, rollout_rate=0.8)
    oracle, _ = build_oracle()
    device = torch.device("cpu")
    full = OracleExperiment(protocol, oracle, 0, tmp_path / "full", device).run("seqgan")

    calls = []

    def interrupt(method):
        calls.append(method)
        if method == "seqgan" and calls.count("seqgan") == 3:  # after D pre-training and one round
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        OracleExperiment(protocol, oracle, 0, tmp_path / "cut", device, on_checkpoint=interrupt).run("seqgan")
    resumed = OracleExperiment(protocol, oracle, 0, tmp_path / "cut", device).run("seqgan")
    assert resumed["nll_oracle"] == full["nll_oracle"]
    assert resumed["curve"] == full["curve"]
    assert resumed["d_acc"] == full["d_acc"]


def _oracle_args(tmp_path, *extra):
    return ("seqgan", "oracle", "--preset", "small", *TINY_SET, "--out", tmp_path / "run", "--methods", "random", *extra)


def test_bad_oracle_files(cli, tmp_path):
    assert_one_line_error(cli(*_oracle_args(tmp_path, "--oracle", tmp_path / "missing.npz")))
    (tmp_path / "corrupt.npz").write_bytes(b"\x00garbage")
    assert_one_line_error(cli(*_oracle_args(tmp_path, "--oracle", tmp_path / "corrupt.npz")))
    np.savez(tmp_path / "shape.npz", **(random_oracle_params(0) | {"embedding": np.zeros((5000, 16), np.float32)}))
    result = cli(*_oracle_args(tmp_path, "--oracle", tmp_path / "shape.npz"))
    assert_one_line_error(result)
    assert "embedding" in result.stderr


def test_bad_options(cli, tmp_path):
    for extra in (("--rollouts", "0"), ("--set", "num_rollouts=0"), ("--set", "nope=1"), ("--set", "adv_rounds=x"),
                  ("--methods", "gan"), ("--seeds", "0"), ("--rollout-rate", "1.0")):
        result = cli(*_oracle_args(tmp_path, *extra))
        assert_one_line_error(result)
    assert "rollout count" in cli(*_oracle_args(tmp_path, "--rollouts", "0")).stderr
    assert_one_line_error(cli("seqgan", "oracle", "--preset", "huge", "--out", tmp_path / "x"))


@pytest.mark.shared_data("seqgan_oracle_params.npz")  # else a warning line joins the error
def test_a_resumed_run_must_keep_its_protocol(cli, tmp_path):
    assert cli(*_oracle_args(tmp_path)).exit_code == 0
    result = cli(*_oracle_args(tmp_path, "--set", "eval_samples=49"))
    assert_one_line_error(result)
    assert "different protocol (eval_samples)" in result.stderr
