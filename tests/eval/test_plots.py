"""Figures are written as readable PNGs, atomically, with a CJK font when the text needs one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from matplotlib import font_manager
from matplotlib.image import imread

from seqlab.errors import SeqlabError
from seqlab.eval import plots
from seqlab.eval.plots import has_cjk, plot_attention, plot_learning_curves, plot_loss_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side=200):
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, _ = imread(path).shape
    assert min(height, width) >= min_side
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp.png")] == []  # no temp file left


def test_attention_heatmap_english_from_a_tensor(tmp_path):
    src, tgt = "the cat sat on the mat".split(), "mat the on sat cat the <eos>".split()
    weights = torch.softmax(torch.randn(len(tgt), len(src)), dim=-1)  # (T_tgt, T_src)
    out = plot_attention(weights, src, tgt, tmp_path / "attn.png", title="reverse")
    assert out == tmp_path / "attn.png"
    assert_png(out)


def test_attention_heatmap_chinese_has_every_glyph(tmp_path):
    src, tgt = list("床前明月光，疑是地上霜。"), [*"举头望明月", "<eos>"]
    weights = np.full((len(tgt), len(src)), 1 / len(src))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" otherwise
        plot_attention(weights, src, tgt, tmp_path / "zh.png", title="注意力")
    assert_png(tmp_path / "zh.png")


def test_chinese_without_the_font_would_miss_glyphs(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "has_cjk", lambda texts: False)  # the control: no CJK font chosen
    with pytest.warns(UserWarning, match="missing from font"):
        plot_attention(np.ones((1, 2)) / 2, ["床", "前"], ["月"], tmp_path / "zh.png")


def test_no_cjk_font_installed_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [])
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda *a, **k: [])
    with pytest.raises(SeqlabError, match="apt-get install fonts-wqy-microhei"):
        plot_attention(np.ones((1, 1)), ["床"], ["月"], tmp_path / "zh.png")
    assert not (tmp_path / "zh.png").exists()


def test_has_cjk():
    assert has_cjk(["abc", "月"]) and has_cjk(["ありがとう"]) and has_cjk(["안녕"])
    assert not has_cjk(["hello", "naïve café", ""])


def test_attention_bad_inputs(tmp_path):
    with pytest.raises(SeqlabError, match=r"shape \(2, 3\) but there are 2 target and 2 source tokens"):
        plot_attention(np.zeros((2, 3)), ["a", "b"], ["x", "y"], tmp_path / "a.png")
    with pytest.raises(SeqlabError, match="cannot write a 'xyz' image"):
        plot_attention(np.zeros((1, 1)), ["a"], ["x"], tmp_path / "a.xyz")


def test_loss_curves_from_metrics_rows(tmp_path):
    rows = [{"step": s, "train_loss": 4.0 / (1 + s)} for s in range(0, 100, 5)]
    rows += [{"step": s, "val_loss": 4.2 / (1 + s), "val_ppl": 3.0} for s in (0, 50, 99)]
    assert_png(plot_loss_curves(rows, tmp_path / "loss.png"))
    assert_png(plot_loss_curves(rows[:3], tmp_path / "train_only.png"))
    with pytest.raises(SeqlabError, match="no train_loss or val_loss"):
        plot_loss_curves([{"step": 1, "lr": 0.1}], tmp_path / "none.png")


def test_learning_curves_with_a_vertical_line_and_svg(tmp_path):
    curves = {"MLE": [(e, 10 - 0.01 * e) for e in range(50)], "SeqGAN": [(e, 10 - 0.02 * e) for e in range(50)]}
    assert_png(plot_learning_curves(curves, tmp_path / "lc.png", vline=20, ylabel="NLL-oracle",
                                    vline_label="adversarial training starts"))
    assert (plot_learning_curves(curves, tmp_path / "lc.svg").read_text()).lstrip().startswith("<?xml")
    with pytest.raises(SeqlabError, match="no points"):
        plot_learning_curves({"empty": []}, tmp_path / "x.png")
