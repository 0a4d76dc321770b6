"""Figures: an attention heatmap, train/val loss curves, and learning curves (SeqGAN).

Each function draws on its own `matplotlib.figure.Figure` (Agg canvas, no pyplot state, safe
without a display) and writes the file atomically; the format follows the suffix (png, pdf, svg).
Chinese, Japanese or Korean text needs a CJK-capable font: WenQuanYi Micro Hei
(`apt-get install fonts-wqy-microhei`) is preferred, any Noto CJK font also works.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from seqlab.errors import SeqlabError
from seqlab.io import atomic_path

CJK_FONT_FAMILIES = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans CJK JP",
                     "Noto Sans CJK KR", "Noto Sans CJK TC")
# CJK radicals/punctuation/kana/ideographs, Hangul, compatibility ideographs, full-width forms, ext. B+
_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]")


def plot_attention(weights: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str], path: str | os.PathLike,
                   title: str | None = None) -> Path:
    """Heatmap of attention weights (T_tgt, T_src): row i is where target token i looked in the source."""
    import numpy as np

    if hasattr(weights, "detach"):
        weights = weights.detach().float().cpu().numpy()
    weights = np.asarray(weights, dtype=float)  # (T_tgt, T_src)
    if weights.shape != (len(tgt_tokens), len(src_tokens)):
        raise SeqlabError(f"attention weights have shape {weights.shape} but there are {len(tgt_tokens)} target "
                          f"and {len(src_tokens)} source tokens")
    with _figure(
        (min(30, 2.5 + 0.45 * len(src_tokens)), min(30, 1.8 + 0.4 * len(tgt_tokens))),
        [*src_tokens, *tgt_tokens, title or ""],
    ) as fig:
        ax = fig.add_subplot()
        image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, interpolation="nearest")
        ax.set_xticks(range(len(src_tokens)), labels=list(src_tokens), rotation=60, ha="left")
        ax.set_yticks(range(len(tgt_tokens)), labels=list(tgt_tokens))
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xlabel("source")
        ax.set_ylabel("generated")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
        if title:
            ax.set_title(title, pad=12)
        return _save(fig, path)


def plot_loss_curves(metrics_rows: Iterable[Mapping[str, Any]], path: str | os.PathLike,
                     title: str | None = None) -> Path:
    """Train and validation loss vs step, from metrics.jsonl rows (keys step, train_loss, val_loss)."""
    rows = list(metrics_rows)
    curves = {label: [(r["step"], r[key]) for r in rows if r.get(key) is not None and "step" in r]
              for label, key in (("train", "train_loss"), ("val", "val_loss"))}
    curves = {label: points for label, points in curves.items() if points}
    if not curves:
        raise SeqlabError("no train_loss or val_loss values to plot (is metrics.jsonl empty?)")
    return plot_learning_curves(curves, path, xlabel="step", ylabel="loss (nats/token)", title=title)


def plot_learning_curves(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | os.PathLike,
                         vline: float | None = None, xlabel: str = "epoch", ylabel: str = "value",
                         title: str | None = None, vline_label: str | None = None) -> Path:
    """One line per named curve of (x, y) points; `vline` marks an x (e.g. where adversarial training starts)."""
    if not any(curves.values()):
        raise SeqlabError("no points to plot")
    with _figure((7.0, 4.5), [*curves, title or "", vline_label or ""]) as fig:
        ax = fig.add_subplot()
        for name, points in curves.items():
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=name, marker="o" if len(points) <= 30 else None, markersize=3)
        if vline is not None:
            ax.axvline(vline, color="grey", linestyle="--", linewidth=1, label=vline_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        if title:
            ax.set_title(title)
        return _save(fig, path)


def has_cjk(texts: Iterable[str]) -> bool:
    """Whether any text holds a Chinese, Japanese or Korean character."""
    return any(_CJK.search(t) for t in texts)


def cjk_font_family() -> str:
    """The name of an installed CJK-capable font, WenQuanYi Micro Hei first."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FONT_FAMILIES:
        if family in installed:
            return family
    # installed after matplotlib cached its font list: register the file directly
    for fname in font_manager.findSystemFonts():
        if "wqy-microhei" in Path(fname).name.lower():
            font_manager.fontManager.addfont(fname)
            return font_manager.FontProperties(fname=fname).get_name()
    raise SeqlabError("the text is Chinese/Japanese/Korean but no CJK font is installed; "
                      "install one with: apt-get install fonts-wqy-microhei")


@contextlib.contextmanager
def _figure(size: tuple[float, float], texts: Sequence[str]) -> Iterator[Any]:
    """A fresh Agg figure, with a CJK font first in line when any of `texts` needs one."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rc = {"font.family": "sans-serif"}
    if has_cjk(texts):
        rc["font.sans-serif"] = [cjk_font_family(), *matplotlib.rcParams["font.sans-serif"]]
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise SeqlabError(f"cannot write a {fmt!r} image ({path}); use a .png, .pdf or .svg path")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    return path
