"""bench/compress.py --quick: the compression benchmark runs end to end and prints its JSON lines (no timings checked)."""

from __future__ import annotations

import json

import pytest
from conftest import run_seqlab

pytest.importorskip("ctranslate2")


@pytest.mark.slow
@pytest.mark.shared_data("tinyshakespeare.txt")
def test_quick_speed_run_compares_seqlab_with_ctranslate2(tmp_path):
    result = run_seqlab("bench", "compress", "--quick", "--engines", "seqlab,ct2-fp32,ct2-int8",
                        "--columns", "greedy_b1,beam4,sample_b64", "--work", tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["column"] for r in rows] == ["greedy_b1", "beam4", "sample_b64"]
    for row in rows:
        assert row["threads"] == 1 and row["new_tokens"] == 8 and len(row["load_before"]) == 3
        assert all(row[f"{e}_tok_s"] > 0 for e in ("seqlab", "ct2-fp32", "ct2-int8"))
        assert row["ratio"] == pytest.approx(row["seqlab_tok_s"] / row["ct2-fp32_tok_s"], abs=0.01)
    # the converted fp32 weights decode seqlab's own greedy tokens: the conversion is the same model
    assert rows[0]["ct2-fp32_same_tokens"] is True
    assert "compress speed, tok/s: greedy_b1@1t" in result.stderr
