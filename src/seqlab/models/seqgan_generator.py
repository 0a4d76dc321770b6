"""SeqGAN generators: the protocol's LSTM, and a Transformer option, behind one small step interface.

A generator G models fixed-length sequences y_1..y_T that start from a start token:

    G(y) = Π_t G(y_t | start, y_<t)

Every generator offers
- `forward(seqs)`: teacher forcing, seqs [B, T] -> logits [B, T, V] (position t predicts y_t);
- `start(n)` -> (logits [n, V] for y_1, state) and `step(tokens [n], state)` -> (logits, state): the
  decoding interface the sampler and the batched Monte Carlo rollouts use. A state is a tuple of
  tensors whose first dimension is the batch, so rollouts can gather and slice rows of it.

LSTM (the authors' generator): embedding 32, hidden 32, every parameter initialised N(0, 0.1);
gates in PyTorch's order (i, f, g, o), the same equations as the oracle's cell.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.modules.categorical import sample_categorical

State = tuple[Tensor, ...]


class SequenceGenerator(nn.Module):
    """Shared helpers over `forward` / `start` / `step`, which subclasses define (with vocab_size,
    seq_len and start_token)."""

    vocab_size: int
    seq_len: int
    start_token: int

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def log_probs(self, seqs: Tensor) -> Tensor:
        """log G(y_t | y_<t): seqs [B, T] -> [B, T]."""
        return torch.log_softmax(self(seqs).float(), dim=-1).gather(2, seqs.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def sample(self, n: int, chunk: int = 4096) -> Tensor:
        """n sequences [n, T], multinomial with temperature 1."""
        return torch.cat([self._sample(min(chunk, n - s)) for s in range(0, n, chunk)])

    def _sample(self, n: int) -> Tensor:
        logits, state = self.start(n)
        tokens = []
        for t in range(self.seq_len):
            token = sample_categorical(logits)  # (n,)
            tokens.append(token)
            if t + 1 < self.seq_len:
                logits, state = self.step(token, state)
        return torch.stack(tokens, dim=1)  # (n, T)


class LSTMGenerator(SequenceGenerator):
    """The protocol's LSTM generator: embedding -> LSTM -> linear to the vocabulary."""

    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = 32, hidden_dim: int = 32,
                 start_token: int = 0, init_std: float = 0.1):
        super().__init__()
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)
        for p in self.parameters():
            nn.init.normal_(p, 0.0, init_std)
        nn.init.zeros_(self.lstm.bias_hh_l0)  # one bias per gate, as in the authors' cell

    def forward(self, seqs: Tensor) -> Tensor:
        """seqs [B, T] -> logits [B, T, V] for y_t given start, y_<t."""
        inputs = torch.cat([torch.full_like(seqs[:, :1], self.start_token), seqs[:, :-1]], dim=1)  # (B, T)
        hidden, _ = self.lstm(self.embedding(inputs))  # (B, T, H)
        return self.out(hidden)

    def _cell(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """i, f, g, o = chunks of x W_ih^T + b_ih + h W_hh^T + b_hh; c = σ(f) c + σ(i) tanh(g); h = σ(o) tanh(c)."""
        gates = (x @ self.lstm.weight_ih_l0.T + self.lstm.bias_ih_l0 + h @ self.lstm.weight_hh_l0.T
                 + self.lstm.bias_hh_l0)  # (n, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def start(self, n: int) -> tuple[Tensor, State]:
        h = torch.zeros(n, self.lstm.hidden_size, device=self.device)
        return self.step(torch.full((n,), self.start_token, device=h.device), (h, h))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = self._cell(self.embedding(tokens), *state)
        return self.out(h), (h, c)


class TransformerGenerator(SequenceGenerator):
    """A causal Transformer (seqlab's TransformerLM) as a SeqGAN generator.

    The input is [start, y_1 .. y_{T-1}] as for the LSTM. Its decoding state is (inputs [n, T], length [n]):
    each step runs the whole (short) window causally and reads the logits at each row's last input, so
    rows with prefixes of different lengths share one batch without host syncs.
    """

    def __init__(self, vocab_size: int, seq_len: int, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
                 start_token: int = 0, dropout: float = 0.0):
        super().__init__()
        from seqlab.models.transformer_lm import TransformerLM

        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.lm = TransformerLM(vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                context_length=seq_len, dropout=dropout, tie_embeddings=False)

    def forward(self, seqs: Tensor) -> Tensor:
        inputs = torch.cat([torch.full_like(seqs[:, :1], self.start_token), seqs[:, :-1]], dim=1)  # (B, T)
        return self.lm(inputs)

    def start(self, n: int) -> tuple[Tensor, State]:
        inputs = torch.full((n, self.seq_len), self.start_token, dtype=torch.long, device=self.device)
        length = torch.ones(n, dtype=torch.long, device=inputs.device)
        return self._logits(inputs, length), (inputs, length)

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        inputs, length = state
        inputs = inputs.scatter(1, length[:, None], tokens[:, None])  # write at each row's next slot
        length = length + 1
        return self._logits(inputs, length), (inputs, length)

    def _logits(self, inputs: Tensor, length: Tensor) -> Tensor:
        logits = self.lm(inputs)  # (n, T, V); causal, so slots after `length` do not matter
        return logits[torch.arange(inputs.shape[0], device=inputs.device), length - 1]  # (n, V)


def build_generator(kind: str, vocab_size: int, seq_len: int, start_token: int = 0, **sizes: int) -> SequenceGenerator:
    """`lstm` (the protocol's) or `transformer` (`n_layer`, `n_head`, `n_embd` in `sizes`)."""
    if kind == "lstm":
        return LSTMGenerator(vocab_size, seq_len, start_token=start_token, **sizes)
    if kind == "transformer":
        return TransformerGenerator(vocab_size, seq_len, start_token=start_token, **sizes)
    from seqlab.errors import ConfigError

    raise ConfigError(f"unknown generator {kind!r}; choose one of lstm, transformer")
