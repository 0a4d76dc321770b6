"""Scores of generated replies against their references: the metrics half of `seqlab eval`."""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.eval.score import score_texts


def evaluate_generations(hyps: Sequence[str], refs: Sequence[str], lang: str = "en",
                         tokenize: str | None = None) -> dict[str, float | int | None]:
    """`score_texts` of one generated text per reference, plus `examples` (how many were scored)."""
    return {**score_texts(hyps, [list(refs)], lang, tokenize), "examples": len(hyps)}
