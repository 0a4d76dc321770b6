"""`seqlab bench NAME [ARGS...]`: runs bench/NAME.py of the checkout; clear errors otherwise."""

from __future__ import annotations

from conftest import assert_one_line_error, run_seqlab


def test_unknown_benchmark_lists_the_available_ones(cli):
    result = cli("bench", "nope")
    assert_one_line_error(result)
    assert "unknown benchmark 'nope'; available:" in result.stderr and "dialogue" in result.stderr


def test_arguments_reach_the_script():
    result = run_seqlab("bench", "dialogue", "--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "shakespeare-dialogue" in result.stdout and "--device" in result.stdout


def test_outside_a_checkout_is_one_line_error(cli, monkeypatch, tmp_path):
    import seqlab.cli.bench as bench

    monkeypatch.setattr(bench, "bench_dir", lambda: tmp_path / "bench")
    result = cli("bench", "dialogue")
    assert_one_line_error(result)
    assert "repository checkout" in result.stderr
