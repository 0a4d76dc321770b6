"""Recurrent language models: Elman RNN, LSTM or GRU cells (torch.nn's, so cuDNN kernels on GPU).

One step of each cell at one layer, input x_t, previous state h_{t-1} (c_{t-1}); σ = sigmoid,
⊙ = elementwise product, gate order as in PyTorch's weight layout:

    rnn:   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    lstm:  [i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
           c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),      h_t = σ(o) ⊙ tanh(c_t)
    gru:   [r_i, z_i, n_i] = W_ih x_t + b_ih,          [r_h, z_h, n_h] = W_hh h_{t-1} + b_hh
           r = σ(r_i + r_h),  z = σ(z_i + z_h),  n = tanh(n_i + r ⊙ n_h),   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

The model: e_t = dropout(E[idx_t]) -> n_layer stacked cells (dropout between layers) -> dropout
-> logits = W_out h_t + b. With tied embeddings W_out = E; when hidden_size != n_embd a
projection P (no bias) maps h_t to the embedding width first: logits = E (P h_t) + b.

`model(idx)` returns logits (B, T, V); `model(idx, targets)` returns `(logits, loss)` with the mean
cross-entropy over targets != -100. Decoding (seqlab.decode.state): the state is the cell's hidden
state, (n_layer, B, H) — for the LSTM the pair (h, c); padding tokens never touch it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqlab.config import ModelConfig
from seqlab.errors import SeqlabError
from seqlab.models import register
from seqlab.modules.linear import Linear
from seqlab.modules.recurrent import run_rnn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

RNNState = Tensor | tuple[Tensor, Tensor]  # (n_layer, B, H), or (h, c) for the LSTM


class RNNLanguageModel(nn.Module):
    """Stacked RNN / LSTM / GRU language model; see the module docstring for the equations."""

    is_encoder_decoder = False
    max_length = None  # unbounded: the state has a fixed size whatever the length
    capturable_step = False  # `step` returns new hidden-state tensors (cuDNN's), so no CUDA graph

    def __init__(self, vocab_size: int, cell: str = "lstm", n_layer: int = 2, n_embd: int = 128,
                 hidden_size: int = 256, dropout: float = 0.0, tie_embeddings: bool = True):
        super().__init__()
        if cell not in CELLS:
            raise SeqlabError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        self.vocab_size, self.cell, self.n_layer = vocab_size, cell, n_layer
        self.n_embd, self.hidden_size = n_embd, hidden_size
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.rnn = CELLS[cell](n_embd, hidden_size, num_layers=n_layer, batch_first=True,
                               dropout=dropout if n_layer > 1 else 0.0)
        project = tie_embeddings and hidden_size != n_embd
        self.proj = Linear(hidden_size, n_embd, bias=False) if project else None
        self.lm_head = Linear(n_embd if tie_embeddings else hidden_size, vocab_size)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=0.1)
        nn.init.zeros_(self.lm_head.bias)
        if tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    def _run(self, idx: Tensor, hidden: RNNState | None) -> tuple[Tensor, RNNState]:
        """idx (B, T) from state `hidden` (None = zeros) -> logits (B, T, V), new state."""
        out, hidden = run_rnn(self.rnn, self.drop(self.embedding(idx)), hidden)  # (B, T, H)
        return self._logits(out), hidden

    def _logits(self, out: Tensor) -> Tensor:
        out = self.drop(out)  # (..., H)
        if self.proj is not None:
            out = self.proj(out)  # (..., C)
        return self.lm_head(out)  # (..., V)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """idx (B, T) -> logits (B, T, V); with targets (B, T): (logits, mean cross-entropy ignoring -100)."""
        logits, _ = self._run(idx, None)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    # ------------------------------------------------------------------ decoding (seqlab.decode.state)

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                max_new_tokens: int = 0) -> tuple[Tensor, RNNState]:
        """Run the prompt (B, T) from a zero state, skipping tokens where attention_mask is 0.

        Returns the logits (B, V) after each row's last real token, and the state there.
        """
        if attention_mask is None or bool(attention_mask.all()):
            logits, hidden = self._run(input_ids, None)
            return logits[:, -1], hidden
        real = attention_mask.bool()  # (B, T)
        lengths = real.sum(1)  # (B,)
        if bool((lengths == 0).any()):
            raise SeqlabError("every prompt needs at least one token (an attention_mask row is all zeros)")
        # real tokens first, in order (left padding -> right padding), then pack so padding is skipped
        order = torch.argsort((~real).to(torch.uint8), dim=1, stable=True)  # (B, T)
        x = self.drop(self.embedding(input_ids.gather(1, order)))  # (B, T, C)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        top = (hidden[0] if isinstance(hidden, tuple) else hidden)[-1]  # (B, H): last layer at the last real token
        return self._logits(top), hidden

    def step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """Feed tokens (B,) -> logits (B, V) and the next state."""
        logits, hidden = self._run(tokens[:, None], state)  # (B, 1, V)
        return logits[:, 0], hidden

    def reorder_state(self, state: RNNState, index: Tensor) -> RNNState:
        """Rows `index` (B',) of the batch."""
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index.to(s.device)) for s in state)
        return state.index_select(1, index.to(state.device))

    def merge_states(self, a: RNNState, b: RNNState) -> RNNState:
        """Rows of `a`, then rows of `b` (continuous batching): the hidden states side by side."""
        if isinstance(a, tuple):
            return tuple(torch.cat([x, y], dim=1) for x, y in zip(a, b, strict=True))
        return torch.cat([a, b], dim=1)


@register("rnn_lm")
def build_rnn_lm(cfg: ModelConfig, vocab_size: int, **extra: int) -> RNNLanguageModel:
    return RNNLanguageModel(vocab_size, cell=cfg.cell, n_layer=cfg.n_layer, n_embd=cfg.n_embd,
                            hidden_size=cfg.hidden_size, dropout=cfg.dropout, tie_embeddings=cfg.tie_embeddings)
