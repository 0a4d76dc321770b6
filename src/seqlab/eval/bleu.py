"""BLEU (Papineni et al., 2002) through sacrebleu: corpus BLEU, and sentence BLEU against a pool.

For n-gram orders 1..N with clipped counts `c_n` and hypothesis n-gram totals `t_n`,

    p_n  = c_n / t_n                       (clip: an n-gram counts at most as often as in any one reference)
    BP   = min(1, exp(1 - r / h))          (h = hypothesis length, r = closest reference length)
    BLEU = 100 * BP * exp(sum_n (1/N) log p_n)

BLEU-n (SeqGAN's BLEU-2..5, Texygen) is this with N = n and uniform weights 1/n, which is exactly
sacrebleu's `BLEU(max_ngram_order=n)`; no other weighting is in use, so none is offered.

Two ways to choose references:
- `corpus_bleu`: parallel references (reference set k holds one sentence per hypothesis),
  statistics summed over the corpus: `sacrebleu.corpus_bleu(hyps, refs).score`.
- `pooled_bleu`: every hypothesis against the whole pool of references (the SeqGAN / Texygen
  protocol for unconditional generation: generated poems against all held-out poems), the mean
  of `sacrebleu.sentence_bleu(h, pool).score`. A `ReferencePool` precomputes the pool's clipping
  counts once, so 10,000 references cost one pass instead of one pass per hypothesis; it works on
  any token sequences (strings or token ids), and can leave one reference out (self-BLEU).
Texygen scored with NLTK's `sentence_bleu(..., smoothing_function=SmoothingFunction().method1)`;
`smooth_method="floor", smooth_value=0.1` reproduces it exactly for hypotheses of at least n
tokens (tested). The default here, as in `sacrebleu.sentence_bleu`, is `exp`.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Hashable, Sequence

from seqlab.errors import SeqlabError
from seqlab.eval.tokens import bleu_tokens, resolve_tokenize


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], tokenize: str = "13a",
                max_ngram_order: int = 4) -> float:
    """`sacrebleu.corpus_bleu(hyps, refs, tokenize=...).score` (0-100), with BLEU-n via `max_ngram_order`.

    `refs` holds one list per reference set, each as long as `hyps`.
    """
    from sacrebleu.metrics import BLEU

    resolve_tokenize(tokenize=tokenize)
    check_parallel(hyps, refs)
    # force=True only silences sacrebleu's "looks tokenized" warning (word-level models print
    # space-separated tokens, so it would fire on every run); the score is the same
    bleu = BLEU(tokenize=tokenize, max_ngram_order=max_ngram_order, force=True)
    return bleu.corpus_score(list(hyps), refs).score


def pooled_bleu(hyps: Sequence[str], references: Sequence[str], max_ngram_order: int = 4,
                tokenize: str = "13a", smooth_method: str = "exp", smooth_value: float | None = None) -> float:
    """Mean over hypotheses of `sacrebleu.sentence_bleu(h, references).score` (BLEU-n: max_ngram_order=n)."""
    resolve_tokenize(tokenize=tokenize)
    if not hyps:
        raise SeqlabError("BLEU needs at least one hypothesis")
    pool = ReferencePool([bleu_tokens(r, tokenize) for r in references], max_ngram_order)
    scores = [pool.sentence_bleu(bleu_tokens(h, tokenize), smooth_method=smooth_method, smooth_value=smooth_value)
              for h in hyps]
    return sum(scores) / len(scores)


class ReferencePool:
    """Clipping counts and lengths of a pool of references, for sentence BLEU against all of them.

    For each n-gram it keeps the largest count in any one reference (and which reference that
    is) and the largest count in any other reference, so leaving reference `i` out costs nothing.
    """

    def __init__(self, references: Sequence[Sequence[Hashable]], max_ngram_order: int = 4) -> None:
        if not references:
            raise SeqlabError("BLEU needs at least one reference")
        self.max_ngram_order = max_ngram_order
        self._best: dict[tuple, tuple[int, int]] = {}  # n-gram -> (count, reference index)
        self._second: dict[tuple, int] = {}  # n-gram -> largest count outside the best reference
        for i, tokens in enumerate(references):
            for gram, count in ngram_counts(tokens, max_ngram_order).items():
                best = self._best.get(gram)
                if best is None:
                    self._best[gram] = (count, i)
                elif count > best[0]:
                    self._second[gram] = best[0]
                    self._best[gram] = (count, i)
                elif count > self._second.get(gram, 0):
                    self._second[gram] = count
        self._lengths = Counter(len(t) for t in references)
        self._sorted_lengths = sorted(self._lengths)
        self._ref_lengths = [len(t) for t in references]

    def __len__(self) -> int:
        return len(self._ref_lengths)

    def clip(self, gram: tuple, exclude: int | None = None) -> int:
        """The most times `gram` occurs in one reference (reference `exclude` left out)."""
        best = self._best.get(gram)
        if best is None:
            return 0
        return self._second.get(gram, 0) if best[1] == exclude else best[0]

    def closest_length(self, hyp_len: int, exclude: int | None = None) -> int:
        """The reference length closest to `hyp_len`, the shorter on a tie (as sacrebleu)."""
        skip = None if exclude is None else self._ref_lengths[exclude]

        def available(length: int) -> bool:
            return self._lengths[length] > (1 if length == skip else 0)

        lengths = self._sorted_lengths
        pos = bisect.bisect_left(lengths, hyp_len)
        below = next((lengths[j] for j in range(pos - 1, -1, -1) if available(lengths[j])), None)
        above = next((lengths[j] for j in range(pos, len(lengths)) if available(lengths[j])), None)
        if above is None or (below is not None and hyp_len - below <= above - hyp_len):
            return below
        return above

    def statistics(self, hyp: Sequence[Hashable], exclude: int | None = None) -> list[int]:
        """sacrebleu's sentence statistics: [hyp_len, ref_len, correct_1..N, total_1..N]."""
        if exclude is not None and len(self) < 2:
            raise SeqlabError("leaving one reference out needs at least two references")
        n = self.max_ngram_order
        correct, total = [0] * n, [0] * n
        for gram, count in ngram_counts(hyp, n).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, self.clip(gram, exclude))
        return [len(hyp), self.closest_length(len(hyp), exclude), *correct, *total]

    def sentence_bleu(self, hyp: Sequence[Hashable], exclude: int | None = None, smooth_method: str = "exp",
                      smooth_value: float | None = None, effective_order: bool = True) -> float:
        """`sacrebleu.sentence_bleu(hyp, pool).score` on pre-tokenized input (0-100)."""
        from sacrebleu.metrics import BLEU

        n = self.max_ngram_order
        stats = self.statistics(hyp, exclude)
        return BLEU.compute_bleu(stats[2:2 + n], stats[2 + n:], sys_len=stats[0], ref_len=stats[1],
                                 smooth_method=smooth_method, smooth_value=smooth_value,
                                 effective_order=effective_order, max_ngram_order=n).score


def ngram_counts(tokens: Sequence[Hashable], max_order: int) -> Counter:
    """Counts of every n-gram of `tokens`, 1 <= n <= max_order, as tuples."""
    tokens = list(tokens)
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def check_parallel(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    """Raise unless there are hypotheses and every reference set has one line per hypothesis."""
    if not hyps:
        raise SeqlabError("there are no hypotheses to score")
    if not refs:
        raise SeqlabError("scoring needs at least one reference set")
    for k, ref_set in enumerate(refs):
        if len(ref_set) != len(hyps):
            raise SeqlabError(f"reference set {k + 1} has {len(ref_set)} lines but there are {len(hyps)} hypotheses")
