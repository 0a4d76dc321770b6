"""The SeqGAN synthetic oracle ("target LSTM"): a fixed random LSTM that plays the real data distribution.

Cell, in the authors' row-vector convention (x, h are [B, 32]):

    i = σ(x Wi + h Ui + bi)          f = σ(x Wf + h Uf + bf)          o = σ(x Wo_gate + h Uo_gate + bo_gate)
    c̃ = tanh(x Wc + h Uc + bc)       c = f ⊙ c_prev + i ⊙ c̃           h = o ⊙ tanh(c)
    logits = h W_out + b_out

h0 = c0 = 0; the first input is the embedding of the start token 0, then each token's embedding.
The parameters are the authors' own (`seqgan_oracle_params.npz`, read with `allow_pickle=False`),
or, when that file is absent, every array drawn from N(0, 1) with a fixed seed (said loudly).

NLL-oracle, the metric of SeqGAN's Table 1, scores a model's samples x with the oracle:

    NLL_oracle = −(1 / (N·T)) Σ_n Σ_t log p_oracle(x_t | start, x_<t)
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from seqlab.errors import DataError
from seqlab.modules.categorical import sample_categorical

VOCAB_SIZE, EMB_DIM, HIDDEN_DIM, SEQ_LEN, START_TOKEN = 5000, 32, 32, 20, 0
ORACLE_FILE = "seqgan_oracle_params.npz"
GATES = (("Wi", "Ui", "bi"), ("Wf", "Uf", "bf"), ("Wo_gate", "Uo_gate", "bo_gate"), ("Wc", "Uc", "bc"))
ORACLE_SHAPES: dict[str, tuple[int, ...]] = {
    "embedding": (VOCAB_SIZE, EMB_DIM),
    **{w: (EMB_DIM, HIDDEN_DIM) for w, _, _ in GATES},
    **{u: (HIDDEN_DIM, HIDDEN_DIM) for _, u, _ in GATES},
    **{b: (HIDDEN_DIM,) for _, _, b in GATES},
    "W_out": (HIDDEN_DIM, VOCAB_SIZE),
    "b_out": (VOCAB_SIZE,),
}


class OracleLSTM(nn.Module):
    """The oracle LSTM with fixed parameters (buffers named as in the .npz; nothing is trained)."""

    def __init__(self, params: dict[str, np.ndarray], seq_len: int = SEQ_LEN, start_token: int = START_TOKEN):
        super().__init__()
        for name, array in params.items():
            self.register_buffer(name, torch.as_tensor(np.asarray(array, dtype=np.float32)))
        self.seq_len, self.start_token = seq_len, start_token
        self.vocab_size = self.W_out.shape[1]

    def cell(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the protocol's equations: x, h, c [B, H] -> (h, c)."""
        i, f, o, c_tilde = (x @ getattr(self, w) + h @ getattr(self, u) + getattr(self, b) for w, u, b in GATES)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(c_tilde)
        return torch.sigmoid(o) * torch.tanh(c), c

    def _start(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        zeros = self.W_out.new_zeros(n, self.Ui.shape[0])
        x = self.embedding[torch.full((n,), self.start_token, device=zeros.device)]  # (n, E)
        return x, zeros, zeros.clone()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, chunk: int = 4096) -> Tensor:
        """n sequences [n, T] sampled with temperature 1."""
        return torch.cat([self._sample(min(chunk, n - s), generator) for s in range(0, n, chunk)])

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        x, h, c = self._start(n)
        tokens = []
        for _ in range(self.seq_len):
            h, c = self.cell(x, h, c)
            token = sample_categorical(h @ self.W_out + self.b_out, generator)  # (n,)
            tokens.append(token)
            x = self.embedding[token]
        return torch.stack(tokens, dim=1)  # (n, T)

    @torch.no_grad()
    def log_probs(self, seqs: Tensor, chunk: int = 4096) -> Tensor:
        """log p_oracle(x_t | start, x_<t) for every position: seqs [N, T] -> [N, T]."""
        seqs = seqs.to(self.W_out.device)
        return torch.cat([self._log_probs(seqs[s:s + chunk]) for s in range(0, seqs.shape[0], chunk)])

    def _log_probs(self, seqs: Tensor) -> Tensor:
        x, h, c = self._start(seqs.shape[0])
        out = []
        for t in range(seqs.shape[1]):
            h, c = self.cell(x, h, c)
            logp = torch.log_softmax(h @ self.W_out + self.b_out, dim=-1)  # (n, V)
            out.append(logp.gather(1, seqs[:, t:t + 1]).squeeze(1))
            x = self.embedding[seqs[:, t]]
        return torch.stack(out, dim=1)

    def nll(self, seqs: Tensor) -> float:
        """NLL-oracle of the sequences seqs [N, T]: mean negative log-likelihood per token (nats)."""
        return float(-self.log_probs(seqs).mean())


def default_oracle_path() -> Path:
    return Path(os.environ.get("SEQLAB_DATA", ".")) / ORACLE_FILE


def load_oracle_params(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check the oracle's arrays (names and shapes of `ORACLE_SHAPES`); errors are one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"oracle parameters {str(path)!r} not found (expected {ORACLE_FILE}; see --oracle)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz of oracle parameters ({str(e).splitlines()[0]})") from None
    missing = sorted(set(ORACLE_SHAPES) - set(arrays))
    extra = sorted(set(arrays) - set(ORACLE_SHAPES))
    if missing or extra:
        raise DataError(f"{path}: oracle arrays do not match the protocol (missing {missing}, unexpected {extra})")
    for name, shape in ORACLE_SHAPES.items():
        if arrays[name].shape != shape:
            raise DataError(f"{path}: array {name} has shape {list(arrays[name].shape)}, expected {list(shape)}")
        if not np.issubdtype(arrays[name].dtype, np.floating) or not np.isfinite(arrays[name]).all():
            raise DataError(f"{path}: array {name} must hold finite floating-point numbers")
    return arrays


def random_oracle_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Every array drawn from N(0, 1) with a fixed seed (the protocol's fallback)."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in ORACLE_SHAPES.items()}


def build_oracle(path: str | Path | None = None, seed: int = 0) -> tuple[OracleLSTM, str]:
    """The oracle and where its parameters came from.

    `path` given: it must exist and be valid. `path` None: `$SEQLAB_DATA/seqgan_oracle_params.npz`
    when present, else a seeded N(0, 1) oracle, announced on stderr (absolute NLL values then differ
    from the paper's; orderings should not).
    """
    if path is not None:
        return OracleLSTM(load_oracle_params(path)), str(path)
    default = default_oracle_path()
    if default.is_file():
        return OracleLSTM(load_oracle_params(default)), str(default)
    print(f"WARNING: {default} not found: using a RANDOM N(0,1) oracle (seed {seed}); NLL-oracle values "
          "will NOT be comparable with the SeqGAN paper's", file=sys.stderr)
    return OracleLSTM(random_oracle_params(seed)), f"random N(0,1) seed {seed}"
