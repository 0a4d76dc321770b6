"""SeqGAN's discriminator: a CNN text classifier (Kim 2014 with a highway layer), real vs generated.

    E = embed(x)                                   x [B, T] -> [B, T, 64]
    f_w = max_t ReLU(conv_w(E) + b_w)              for each width w in WIDTHS, n_w filters -> [B, n_w]
    f = [f_1; f_2; ...; f_20]                      [B, 1,720]
    τ = σ(f W_T + b_T);  y = τ ⊙ ReLU(f W_H + b_H) + (1 − τ) ⊙ f          (one highway layer)
    logits = dropout_{keep 0.75}(y) W + b          [B, 2]; class 1 = "real"

    loss = mean cross-entropy + λ · (½‖W‖² + ½‖b‖²),  λ = 0.2       (TensorFlow's l2_loss on the output layer)

Initialisation follows the authors' code: embedding U(−1, 1); convolution and linear weights
truncated N(0, 0.1), biases 0.1; the highway gate bias −2 (start mostly carrying f through).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.errors import ConfigError

WIDTHS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
NUM_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)


class Discriminator(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = 64, widths: tuple[int, ...] = WIDTHS,
                 num_filters: tuple[int, ...] = NUM_FILTERS, dropout: float = 0.25, l2_reg: float = 0.2):
        super().__init__()
        if max(widths) > seq_len:
            raise ConfigError(f"the discriminator's widest filter ({max(widths)}) is longer than the sequences "
                              f"({seq_len}); use sequences of at least {max(widths)} tokens")
        self.seq_len, self.l2_reg = seq_len, l2_reg
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.convs = nn.ModuleList(nn.Conv1d(emb_dim, n, w) for w, n in zip(widths, num_filters, strict=True))
        width = sum(num_filters)
        self.highway_gate = nn.Linear(width, width)
        self.highway = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, 2)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
        for m in [*self.convs, self.highway_gate, self.highway, self.out]:
            nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(m.bias, 0.1)
        nn.init.constant_(self.highway_gate.bias, -2.0)

    def forward(self, seqs: Tensor) -> Tensor:
        """seqs [B, T] -> logits [B, 2] (index 1 = real)."""
        emb = self.embedding(seqs).transpose(1, 2)  # (B, E, T)
        features = torch.cat([F.relu(conv(emb)).amax(dim=2) for conv in self.convs], dim=1)  # (B, 1720)
        gate = torch.sigmoid(self.highway_gate(features))
        features = gate * F.relu(self.highway(features)) + (1.0 - gate) * features
        return self.out(self.dropout(features))

    def prob_real(self, seqs: Tensor) -> Tensor:
        """D(seqs) = p(real | seqs): [B, T] -> [B]."""
        return torch.softmax(self(seqs).float(), dim=-1)[:, 1]

    def l2_penalty(self) -> Tensor:
        """½‖W‖² + ½‖b‖² of the output layer (TensorFlow's tf.nn.l2_loss, summed)."""
        return 0.5 * self.out.weight.square().sum() + 0.5 * self.out.bias.square().sum()

    def loss(self, seqs: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy + l2_reg · (½‖W‖² + ½‖b‖²) of the output layer; labels [B] in {0, 1}."""
        return F.cross_entropy(self(seqs), labels) + self.l2_reg * self.l2_penalty()
