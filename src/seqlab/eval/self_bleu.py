"""Self-BLEU (Zhu et al., 2018, Texygen): how much the generated texts resemble each other.

    self_bleu = mean_i sacrebleu.sentence_bleu(h_i, [h_j for j != i]).score      (0-100)

Each hypothesis is scored against all the *other* hypotheses: a hypothesis never counts among
its own references (Texygen issue 46 — including it makes every score 100). Higher means less
diverse; identical hypotheses give 100. One `ReferencePool` over all hypotheses serves every
leave-one-out score, so the cost is linear in the number of hypotheses, not quadratic.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.errors import SeqlabError
from seqlab.eval.bleu import ReferencePool
from seqlab.eval.tokens import bleu_tokens, resolve_tokenize


def self_bleu(hyps: Sequence[str], tokenize: str = "13a", max_ngram_order: int = 4) -> float:
    """Mean sentence BLEU of each hypothesis against all the others (needs >= 2 hypotheses)."""
    resolve_tokenize(tokenize=tokenize)
    if len(hyps) < 2:
        raise SeqlabError(f"self-BLEU needs at least 2 hypotheses, got {len(hyps)}")
    tokens = [bleu_tokens(h, tokenize) for h in hyps]
    pool = ReferencePool(tokens, max_ngram_order)
    return sum(pool.sentence_bleu(t, exclude=i) for i, t in enumerate(tokens)) / len(tokens)
