"""The built-in corpus `oracle` feeds the data pipeline with oracle samples as token-id text."""

from __future__ import annotations

import torch

import seqlab.gan.oracle_corpus as oracle_corpus
from seqlab.data.corpora import list_builtins, load_corpus
from seqlab.data.tokenizers import train_tokenizer
from seqlab.models.oracle import build_oracle


def test_oracle_corpus_is_a_builtin(monkeypatch):
    monkeypatch.setattr(oracle_corpus, "NUM_SEQUENCES", 25)
    assert "oracle" in [b.name for b in list_builtins()]
    corpus = load_corpus("oracle")
    assert corpus.kind == "text" and len(corpus) == 25
    rows = [[int(t) for t in d.text.split()] for d in corpus.documents]
    assert all(len(r) == 20 and all(0 <= t < 5000 for t in r) for r in rows)
    oracle, _ = build_oracle()
    expected = oracle_corpus.oracle_sequences(oracle, 25, oracle_corpus.SEED)
    assert torch.equal(torch.tensor(rows), expected)  # seeded: the same corpus every time
    tok = train_tokenizer("word", [d.text for d in corpus.documents])
    assert len(tok.encode(corpus.documents[0].text)) == 20
