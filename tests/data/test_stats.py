"""corpus_stats on corpora small enough to count by hand."""

from __future__ import annotations

from seqlab.config import DataConfig
from seqlab.data.corpora import Corpus, Document, Pair
from seqlab.data.stats import _percentiles, corpus_stats


def test_text_corpus_counts_by_hand():
    docs = tuple(Document(t, str(i)) for i, t in enumerate(["ab", "abc", "a", "abcd", "b", "ba", "aa", "bb", "cab", "dz"]))
    corpus = Corpus("hand", "text", documents=docs)
    stats = corpus_stats(corpus, DataConfig(corpus="hand", val_fraction=0.1), seed=0, samples=2)
    assert stats["examples"] == 10
    assert stats["characters"] == 2 + 3 + 1 + 4 + 1 + 2 + 2 + 2 + 3 + 2
    assert stats["distinct_characters"] == 5  # a b c d z
    assert stats["tokens"] == stats["characters"]  # char tokenizer; OOV characters still count as tokens
    assert 5 < stats["vocab_size"] <= 5 + 5
    assert 0.0 <= stats["oov_rate"] <= 1.0
    assert stats["length_percentiles"] == {"min": 1, "p50": 2, "p90": 3, "p95": 4, "p99": 4, "max": 4}
    assert len(stats["samples"]) == 2 and all(s in [d.text for d in docs] for s in stats["samples"])


def test_oov_rate_is_measured_on_held_out_text():
    corpus = Corpus("stream", "text", documents=(Document("a" * 90 + "bbbbbzzzzz", "0"),))
    stats = corpus_stats(corpus)
    assert stats["oov_rate"] == 1.0  # the last 10% (contiguous) holds only characters train never saw
    assert stats["vocab_size"] == 6 and stats["length_unit"] == "line"


def test_pairs_report_duplicates():
    pairs = tuple(Pair("hi", "hello", f"g{i}") for i in range(3)) + tuple(Pair(f"q{i}", "a", f"h{i}") for i in range(17))
    stats = corpus_stats(Corpus("p", "pairs", examples=pairs))
    assert (stats["examples"], stats["pairs"], stats["pairs_deduplicated"]) == (20, 20, 18)
    assert stats["length_percentiles"]["target"]["max"] == 5


def test_nearest_rank_percentiles():
    assert _percentiles(list(range(1, 101))) == {"min": 1, "p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
    assert _percentiles([7]) == {"min": 7, "p50": 7, "p90": 7, "p95": 7, "p99": 7, "max": 7}


def test_too_small_to_hold_out():
    stats = corpus_stats(Corpus("one", "pairs", examples=(Pair("hi", "hello", "g"),)))
    assert stats["oov_rate"] is None and stats["pairs"] == 1 and stats["vocab_size"] == 5 + len(set("hihello"))
