"""All text metrics of generated sentences at once: BLEU, ROUGE, distinct-n, self-BLEU, length.

| key                   | definition                                                          | range |
|-----------------------|---------------------------------------------------------------------|-------|
| bleu                  | `sacrebleu.corpus_bleu(hyps, refs, tokenize=T).score`               | 0-100 |
| rouge1/rouge2/rougeL  | mean F of rouge-score, best over references (`score_multi`)         | 0-1   |
| distinct1/distinct2   | unique / total n-grams over all hypotheses, on BLEU's tokens        | 0-1   |
| self_bleu             | mean `sacrebleu.sentence_bleu(h, other hyps).score`; None if < 2    | 0-100 |
| avg_len               | mean hypothesis length in BLEU's tokens                             |       |

T is `13a` for `lang="en"` and `zh` (one token per Chinese character) for `lang="zh"`; `tokenize`
overrides it with any offline sacrebleu tokenizer (`char` for Japanese, Korean or Thai).
"""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.eval.bleu import check_parallel, corpus_bleu
from seqlab.eval.distinct import distinct_n
from seqlab.eval.rouge import rouge
from seqlab.eval.self_bleu import self_bleu
from seqlab.eval.tokens import bleu_tokens, resolve_tokenize

SCORE_KEYS = ("bleu", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "self_bleu", "avg_len")


def score_texts(hyps: Sequence[str], refs: Sequence[Sequence[str]], lang: str = "en",
                tokenize: str | None = None) -> dict[str, float | None]:
    """Score hypotheses against reference sets (one list per set, each as long as `hyps`)."""
    tokenize = resolve_tokenize(lang, tokenize)
    check_parallel(hyps, refs)
    tokens = [bleu_tokens(h, tokenize) for h in hyps]
    return {
        "bleu": corpus_bleu(hyps, refs, tokenize),
        **rouge(hyps, refs, tokenize),
        "distinct1": distinct_n(tokens, 1),
        "distinct2": distinct_n(tokens, 2),
        "self_bleu": self_bleu(hyps, tokenize) if len(hyps) >= 2 else None,
        "avg_len": sum(map(len, tokens)) / len(tokens),
    }
