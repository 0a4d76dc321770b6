"""Seq2Seq RNN: a (bidirectional, multi-layer) RNN/LSTM/GRU encoder and an attentional RNN decoder.

Encoder (packed sequences, so padding never enters a recurrence):

    h_s = BiRNN(E_src x)_s                   (B, S, H); each direction has H/2 units, concatenated
    s_0 = [h_fwd_final; h_bwd_final]         per layer: the decoder starts from the encoder's final state

Decoder, one step t (y_{t-1} the previous target token, BOS at t = 0; e = E_tgt y_{t-1}):

    none:       s_t = RNN(e, s_{t-1});                          o_t = s_t
    bahdanau:   c_t = attn(s_{t-1}, h);  s_t = RNN([e; c_t], s_{t-1});  o_t = tanh(W_c [s_t; c_t])
    luong-*:    s_t = RNN([e; o_{t-1}], s_{t-1})   (input feeding; [e] without it)
                c_t = attn(s_t, h);                              o_t = tanh(W_c [c_t; s_t])

    p(y_t | y_<t, x) = softmax(W_o o_t)      W_o tied to E_tgt when tie_embeddings (through a projection
                                              H -> n_embd when the sizes differ)

with the score functions of `seqlab.modules.attention` (the top decoder layer's state is the query).
Teacher forcing feeds the reference y_{t-1}; scheduled sampling (Bengio et al. 2015) feeds, for each
example and step, the model's own argmax with probability 1 - teacher_forcing.
Training targets use IGNORE_INDEX (-100) at padded positions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.config import ModelConfig
from seqlab.errors import ConfigError, SeqlabError
from seqlab.models import register
from seqlab.modules.attention import ATTENTION_TYPES, GlobalAttention
from seqlab.modules.linear import Linear
from seqlab.modules.padding import source_batch
from seqlab.modules.recurrent import run_rnn

IGNORE_INDEX = -100
RNN_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

Hidden = Tensor | tuple[Tensor, Tensor]  # (L, B, H), or (h, c) for LSTM


@dataclass
class RNNDecoderState:
    """Everything one decoding step needs; every tensor has the batch on dim 0 except `hidden` (dim 1)."""

    hidden: Hidden
    memory: Tensor  # (B, S, H) encoder outputs
    keys: Tensor | None  # (B, S, ·) attention's precomputed key projection
    mask: Tensor  # (B, S) True at real source tokens
    feed: Tensor | None  # (B, H) previous attentional vector o_{t-1} (Luong input feeding)
    attn: Tensor | None  # (B, S) the attention weights of the last step

    def reorder(self, index: Tensor) -> RNNDecoderState:
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        hidden = tuple(h.index_select(1, index) for h in self.hidden) if isinstance(self.hidden, tuple) \
            else self.hidden.index_select(1, index)
        return RNNDecoderState(hidden, pick(self.memory), pick(self.keys), pick(self.mask), pick(self.feed),
                               pick(self.attn))

    def merge(self, other: RNNDecoderState) -> RNNDecoderState:
        """This state's rows, then `other`'s; memory, keys, mask and attention padded to the longer source
        (padding is masked out, so it gets attention weight 0)."""
        S = max(self.mask.size(1), other.mask.size(1))
        cat = lambda x, y: None if x is None else torch.cat([x, y])  # noqa: E731
        source = lambda x, y: None if x is None else torch.cat([_pad_source(x, S), _pad_source(y, S)])  # noqa: E731
        hidden = tuple(torch.cat([h, g], dim=1) for h, g in zip(self.hidden, other.hidden, strict=True)) \
            if isinstance(self.hidden, tuple) else torch.cat([self.hidden, other.hidden], dim=1)
        return RNNDecoderState(hidden, source(self.memory, other.memory), source(self.keys, other.keys),
                               source(self.mask, other.mask), cat(self.feed, other.feed), source(self.attn, other.attn))


def _pad_source(t: Tensor, S: int) -> Tensor:
    """(B, S', ...) -> (B, S, ...) with zeros (False) after the first S' source positions."""
    if t.size(1) == S:
        return t
    out = t.new_zeros(t.size(0), S, *t.shape[2:])
    out[:, :t.size(1)] = t
    return out


class Seq2SeqRNN(nn.Module):
    is_encoder_decoder = True
    max_length = None  # recurrent: no position table

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, *, cell: str = "gru", n_embd: int = 128,
                 hidden_size: int = 256, n_layer: int = 1, dropout: float = 0.0, attention: str = "luong-general",
                 bidirectional: bool = True, input_feeding: bool = True, share_embeddings: bool = True,
                 tie_embeddings: bool = True, pad_id: int = 0, bos_id: int = 2, eos_id: int = 3):
        super().__init__()
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTION_TYPES)}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError("share_embeddings needs one vocabulary for source and target")
        if bidirectional and hidden_size % 2:
            raise ValueError(f"a bidirectional encoder splits hidden_size across directions; {hidden_size} is odd")
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.attention_type = attention
        self.input_feeding = input_feeding and attention.startswith("luong")
        H, rnn = hidden_size, RNN_CELLS[cell]
        self.src_embed = nn.Embedding(src_vocab_size, n_embd, padding_idx=pad_id)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab_size, n_embd, padding_idx=pad_id)
        self.encoder = rnn(n_embd, H // 2 if bidirectional else H, n_layer, batch_first=True,
                           dropout=dropout if n_layer > 1 else 0.0, bidirectional=bidirectional)
        extra_in = H if attention == "bahdanau" or self.input_feeding else 0
        self.decoder = rnn(n_embd + extra_in, H, n_layer, batch_first=True, dropout=dropout if n_layer > 1 else 0.0)
        self.attn = None if attention == "none" else GlobalAttention(attention, H, H)
        self.W_c = None if attention == "none" else Linear(2 * H, H, bias=False)
        self.drop = nn.Dropout(dropout)
        if tie_embeddings:
            self.out_proj = Linear(H, n_embd, bias=False) if H != n_embd else nn.Identity()
            self.lm_head = Linear(n_embd, tgt_vocab_size, bias=False)
            self.lm_head.weight = self.tgt_embed.weight
        else:
            self.out_proj = nn.Identity()
            self.lm_head = Linear(H, tgt_vocab_size)

    # ------------------------------------------------------------------ encoder

    def encode(self, src: Tensor, src_mask: Tensor | None) -> RNNDecoderState:
        """src (B, S) -> the decoder's initial state (memory (B, S', H), mask, s_0); S' <= S trims padding."""
        src, mask, lengths = source_batch(src, src_mask, self.pad_id)
        emb = self.drop(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, H)
        hidden = tuple(self._merge_directions(h) for h in final) if isinstance(final, tuple) \
            else self._merge_directions(final)
        keys = None if self.attn is None else self.attn.keys(memory)
        feed = memory.new_zeros(src.size(0), memory.size(-1)) if self.input_feeding else None
        return RNNDecoderState(hidden, memory, keys, mask, feed, None)

    def _merge_directions(self, h: Tensor) -> Tensor:
        """(L * dirs, B, H / dirs) -> (L, B, H): concatenate each layer's forward and backward states."""
        if not self.encoder.bidirectional:
            return h
        L2, B, half = h.shape
        return h.view(L2 // 2, 2, B, half).permute(0, 2, 1, 3).reshape(L2 // 2, B, 2 * half)

    # ------------------------------------------------------------------ decoder

    def _top(self, hidden: Hidden) -> Tensor:
        return (hidden[0] if isinstance(hidden, tuple) else hidden)[-1]  # (B, H) top layer

    def decode_step(self, tokens: Tensor, state: RNNDecoderState) -> tuple[Tensor, RNNDecoderState]:
        """tokens (B,) y_{t-1} -> (logits (B, V), state at t): one step of the equations in the module docstring."""
        o_t, state = self._advance(tokens, state)
        return self._logits(o_t), state

    def _advance(self, tokens: Tensor, state: RNNDecoderState) -> tuple[Tensor, RNNDecoderState]:
        """tokens (B,) -> the output vector o_t (B, H) before the vocabulary projection, and the new state."""
        e = self.drop(self.tgt_embed(tokens))  # (B, E)
        context = weights = None
        if self.attention_type == "bahdanau":
            context, weights = self.attn(self._top(state.hidden), state.memory, state.mask, state.keys)
            e = torch.cat([e, context], -1)
        elif self.input_feeding:
            e = torch.cat([e, state.feed], -1)
        out, hidden = run_rnn(self.decoder, e[:, None, :], state.hidden)
        s_t = out[:, 0]  # (B, H)
        if self.attention_type == "none":
            o_t = s_t
        elif self.attention_type == "bahdanau":
            o_t = torch.tanh(self.W_c(torch.cat([s_t, context], -1)))
        else:
            context, weights = self.attn(s_t, state.memory, state.mask, state.keys)
            o_t = torch.tanh(self.W_c(torch.cat([context, s_t], -1)))
        return o_t, replace(state, hidden=hidden, attn=weights, feed=o_t if self.input_feeding else None)

    def _logits(self, o: Tensor) -> Tensor:
        return self.lm_head(self.out_proj(self.drop(o)))

    def _decode_parallel(self, tgt_in: Tensor, state: RNNDecoderState) -> Tensor:
        """All steps at once when no step feeds the next (no attention, or Luong without input feeding)."""
        out, _ = self.decoder(self.drop(self.tgt_embed(tgt_in)), state.hidden)  # (B, T, H)
        if self.attention_type == "none":
            return self._logits(out)
        context, _ = self.attn(out, state.memory, state.mask, state.keys)  # (B, T, H)
        return self._logits(torch.tanh(self.W_c(torch.cat([context, out], -1))))

    def forward(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor, targets: Tensor | None = None,
                teacher_forcing: float = 1.0) -> Tensor | tuple[Tensor, Tensor]:
        """src (B, S), tgt_in (B, T) = BOS + target -> logits (B, T, V); with targets (B, T) also the mean
        cross-entropy over positions != IGNORE_INDEX. teacher_forcing < 1 turns on scheduled sampling."""
        state = self.encode(src, src_mask)
        if teacher_forcing >= 1.0 and self.attention_type != "bahdanau" and not self.input_feeding:
            logits = self._decode_parallel(tgt_in, state)
        else:
            outputs, tokens = [], tgt_in[:, 0]
            for t in range(tgt_in.size(1)):
                o_t, state = self._advance(tokens, state)
                outputs.append(o_t)
                if t + 1 < tgt_in.size(1):
                    tokens = tgt_in[:, t + 1]
                    if teacher_forcing < 1.0:  # scheduled sampling: the model's own guess instead
                        own = self._logits(o_t.detach()).argmax(-1)
                        tokens = torch.where(torch.rand(tokens.shape, device=tokens.device) < teacher_forcing, tokens, own)
            logits = self._logits(torch.stack(outputs, 1))  # one projection for all steps: (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    # ------------------------------------------------------------------ decoder-state protocol

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int
                ) -> tuple[Tensor, RNNDecoderState]:
        """Encode the source (B, S) and feed BOS: logits (B, V) for the first target token."""
        state = self.encode(input_ids, attention_mask)
        bos = torch.full((input_ids.size(0),), self.bos_id, dtype=torch.long, device=input_ids.device)
        return self.decode_step(bos, state)

    def step(self, tokens: Tensor, state: RNNDecoderState) -> tuple[Tensor, RNNDecoderState]:
        return self.decode_step(tokens, state)

    def reorder_state(self, state: RNNDecoderState, index: Tensor) -> RNNDecoderState:
        return state.reorder(index.to(state.memory.device))

    def merge_states(self, a: RNNDecoderState, b: RNNDecoderState) -> RNNDecoderState:
        """Rows of `a`, then rows of `b` (continuous batching), the encoder memories padded to the longer source."""
        return a.merge(b)

    @torch.no_grad()
    def attention_weights(self, src: Tensor, tgt: Tensor) -> Tensor:
        """src (S,), tgt (T,) a generated target -> (T, S): row t is the attention while predicting tgt[t]."""
        if self.attn is None:
            raise SeqlabError("this model has no attention (model.attention = none): nothing to plot")
        _, state = self.prefill(src[None], None, len(tgt))
        rows = [state.attn]
        for token in tgt[:-1]:
            _, state = self.decode_step(token.view(1), state)
            rows.append(state.attn)
        return torch.cat(rows, 0)  # (T, S)


@register("seq2seq_rnn")
def build_seq2seq_rnn(cfg: ModelConfig, vocab_size: int, *, pad_id: int, bos_id: int, eos_id: int,
                      src_vocab_size: int | None = None, **_: int) -> Seq2SeqRNN:
    """`src_vocab_size` (default `vocab_size`) gives the source its own vocabulary (then share_embeddings=false)."""
    if cfg.bidirectional and cfg.hidden_size % 2:
        raise ConfigError(f"model.hidden_size ({cfg.hidden_size}) must be even for a bidirectional encoder")
    src_vocab_size = src_vocab_size or vocab_size
    if cfg.share_embeddings and src_vocab_size != vocab_size:
        raise ConfigError("model.share_embeddings needs one vocabulary for source and target; set it to false")
    return Seq2SeqRNN(src_vocab_size, vocab_size, cell=cfg.cell, n_embd=cfg.n_embd, hidden_size=cfg.hidden_size,
                      n_layer=cfg.n_layer, dropout=cfg.dropout, attention=cfg.attention,
                      bidirectional=cfg.bidirectional, input_feeding=cfg.input_feeding,
                      share_embeddings=cfg.share_embeddings, tie_embeddings=cfg.tie_embeddings,
                      pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)
