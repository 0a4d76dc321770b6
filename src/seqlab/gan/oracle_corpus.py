"""The built-in corpus `oracle`: sequences sampled from SeqGAN's oracle LSTM, as text.

Each document is one sequence of T = 20 token ids written as space-separated integers
("4017 22 3811 ..."), so any seqlab tokenizer (best: `word`) reads it. 10,000 sequences drawn with
a fixed seed from the published oracle (`$SEQLAB_DATA/seqgan_oracle_params.npz`, or the seeded
N(0, 1) fallback when that file is absent).
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqlab.data.corpora.registry import register_builtin
from seqlab.data.corpus import Corpus, Document
from seqlab.models.oracle import OracleLSTM, build_oracle, default_oracle_path

NUM_SEQUENCES, SEED = 10_000, 0


def oracle_sequences(oracle: OracleLSTM, num_sequences: int, seed: int) -> Tensor:
    """num_sequences samples [N, T] of the oracle, reproducible for a seed (independent of the global RNG)."""
    generator = torch.Generator(device=oracle.W_out.device).manual_seed(seed)
    return oracle.sample(num_sequences, generator=generator)


def sequences_to_text(seqs: Tensor) -> list[str]:
    return [" ".join(map(str, row)) for row in seqs.tolist()]


def load_oracle_corpus() -> Corpus:
    oracle, _ = build_oracle()
    texts = sequences_to_text(oracle_sequences(oracle, NUM_SEQUENCES, SEED))
    path = default_oracle_path()
    return Corpus("oracle", "text", documents=tuple(Document(t, f"oracle:{i}") for i, t in enumerate(texts)),
                  source="SeqGAN oracle LSTM (Yu et al. 2017; github.com/LantaoYu/SeqGAN)", license="see SOURCES.md",
                  files=(path,) if path.is_file() else ())


register_builtin("oracle", load_oracle_corpus,
                 "10,000 sequences of 20 token ids sampled from SeqGAN's oracle LSTM (seed 0)",
                 "SeqGAN oracle LSTM (Yu et al. 2017; github.com/LantaoYu/SeqGAN)",
                 "benchmark fixture (random numbers)", "put seqgan_oracle_params.npz in $SEQLAB_DATA")
