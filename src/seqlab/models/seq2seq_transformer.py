"""Transformer encoder-decoder (Vaswani et al. 2017) with pre-LayerNorm blocks and SDPA.

    encoder block:  x = x + SelfAttn(LN(x), mask = source padding);     x = x + MLP(LN(x))
    decoder block:  y = y + SelfAttn(LN(y), causal)
                    y = y + CrossAttn(LN(y), memory = LN_enc(x), mask = source padding)
                    y = y + MLP(LN(y))
    Attn(Q, K, V) = softmax(Q K^T / sqrt(d_head) + M) V     (torch's scaled_dot_product_attention)
    MLP(x) = act(x W_up) W_down                              hidden width 4 d (or fewer, neuron-pruned)

Every attention has n_head heads of width d_head (default d / n_head; head-pruned models keep d_head with
fewer heads, so the attention's inner width n_head * d_head is below d).
    p(y_t | y_<t, x) = softmax(W_o LN_dec(y_t))              W_o tied to the target embedding when asked

Positions are learned tables or fixed sinusoids PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(...);
with sinusoids the token embeddings are scaled by sqrt(d) as in the paper. Decoding keeps a static
self-attention KV cache and each layer's cross-attention keys/values, computed once per source.
Training targets use IGNORE_INDEX (-100) at padded positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.errors import ConfigError, SeqlabError
from seqlab.models import register
from seqlab.modules.init import gpt2_init
from seqlab.modules.kv_cache import StaticKVCache, reorder_rows
from seqlab.modules.linear import Linear
from seqlab.modules.padding import source_batch

IGNORE_INDEX = -100
ACTIVATIONS = {"gelu": nn.GELU(), "gelu_new": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}


def sinusoids(length: int, dim: int) -> Tensor:
    """The fixed (length, dim) position table of Vaswani et al."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Attention(nn.Module):
    """Multi-head attention of queries x (B, T, C) over keys/values from `source` (B, S, C), through
    n_head heads of width head_dim (inner width A = n_head * head_dim)."""

    def __init__(self, n_embd: int, n_head: int, head_dim: int, dropout: float, bias: bool):
        super().__init__()
        self.n_head, self.head_dim, self.dropout = n_head, head_dim, dropout
        self.q = Linear(n_embd, n_head * head_dim, bias=bias)
        self.kv = Linear(n_embd, 2 * n_head * head_dim, bias=bias)
        self.proj = Linear(n_head * head_dim, n_embd, bias=bias)

    def heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape  # (B, T, A)
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def keys_values(self, source: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)  # 2 x (B, nh, S, hs)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """mask (B | 1, 1, T | 1, S) True = may attend. Returns (B, T, C) and, if asked, weights (B, nh, T, S)."""
        q = self.heads(self.q(x))  # (B, nh, T, hs)
        if need_weights:  # explicit softmax, for looking at the attention (the same numbers SDPA computes)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            y = weights @ v
        else:
            weights = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                               dropout_p=self.dropout if self.training else 0.0)
        B, nh, T, hs = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, nh * hs)), weights


class MLP(nn.Module):
    def __init__(self, n_embd: int, width: int, activation: str, dropout: float, bias: bool):
        super().__init__()
        self.up, self.act = Linear(n_embd, width, bias=bias), ACTIVATIONS[activation]
        self.down, self.drop = Linear(width, n_embd, bias=bias), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.down(self.act(self.up(x))))


class EncoderLayer(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_dim: int, mlp_width: int, activation: str, dropout: float,
                 bias: bool):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd, bias=bias), nn.LayerNorm(n_embd, bias=bias)
        self.attn = Attention(n_embd, n_head, head_dim, dropout, bias)
        self.mlp, self.drop = MLP(n_embd, mlp_width, activation, dropout, bias), nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.drop(self.attn(h, *self.attn.keys_values(h), mask=mask)[0])
        return x + self.mlp(self.ln_2(x))


class DecoderLayer(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_dim: int, mlp_width: int, activation: str, dropout: float,
                 bias: bool):
        super().__init__()
        self.ln_1, self.ln_2, self.ln_3 = (nn.LayerNorm(n_embd, bias=bias) for _ in range(3))
        self.self_attn = Attention(n_embd, n_head, head_dim, dropout, bias)
        self.cross_attn = Attention(n_embd, n_head, head_dim, dropout, bias)
        self.mlp, self.drop = MLP(n_embd, mlp_width, activation, dropout, bias), nn.Dropout(dropout)

    def forward(self, y: Tensor, self_kv: tuple[Tensor, Tensor], self_mask: Tensor | None, causal: bool,
                cross_kv: tuple[Tensor, Tensor], cross_mask: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """`self_kv` are this layer's keys/values of LN_1(y) (the whole prefix when decoding from the cache)."""
        y = y + self.drop(self.self_attn(self.ln_1(y), *self_kv, mask=self_mask, causal=causal)[0])
        a, weights = self.cross_attn(self.ln_2(y), *cross_kv, mask=cross_mask, need_weights=need_weights)
        y = y + self.drop(a)
        return y + self.mlp(self.ln_3(y)), weights


@dataclass
class TransformerDecoderState:
    cache: StaticKVCache  # decoder self-attention keys/values, (B, nh, max_len, hs) per layer
    cross: list[tuple[Tensor, Tensor]]  # per layer: cross-attention keys/values of the memory (B, nh, S, hs)
    mask: Tensor  # (B, 1, 1, S) True at real source tokens
    pos: int  # target positions written so far: the cache slot the next token is written to
    offset: Tensor | None = None  # (B,) merged batches: the slot each row's target starts at (None: all at 0)


class Seq2SeqTransformer(nn.Module):
    is_encoder_decoder = True

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, *, n_layer: int = 3, n_head: int = 4,
                 n_embd: int = 128, context_length: int = 256, dropout: float = 0.0, positions: str = "learned",
                 activation: str = "gelu", bias: bool = True, share_embeddings: bool = True,
                 tie_embeddings: bool = True, pad_id: int = 0, bos_id: int = 2, eos_id: int = 3,
                 head_dim: int | None = None, mlp_width: int | None = None):
        """`head_dim` None is n_embd / n_head, `mlp_width` None is 4 * n_embd; pruned models give them."""
        super().__init__()
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be learned or sinusoidal, got {positions!r}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError("share_embeddings needs one vocabulary for source and target")
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.max_length = context_length  # per side: source tokens, and target tokens including BOS
        self.n_embd = n_embd
        self.src_embed = nn.Embedding(src_vocab_size, n_embd)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab_size, n_embd)
        if positions == "learned":
            self.pos_embed = nn.Embedding(context_length, n_embd)
            self.embed_scale = 1.0
        else:
            self.register_buffer("pos_table", sinusoids(context_length, n_embd), persistent=False)
            self.embed_scale = math.sqrt(n_embd)
        self.drop = nn.Dropout(dropout)
        head_dim = n_embd // n_head if head_dim is None else head_dim
        mlp_width = 4 * n_embd if mlp_width is None else mlp_width
        self.encoder = nn.ModuleList(EncoderLayer(n_embd, n_head, head_dim, mlp_width, activation, dropout, bias)
                                     for _ in range(n_layer))
        self.decoder = nn.ModuleList(DecoderLayer(n_embd, n_head, head_dim, mlp_width, activation, dropout, bias)
                                     for _ in range(n_layer))
        self.ln_enc, self.ln_dec = nn.LayerNorm(n_embd, bias=bias), nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = Linear(n_embd, tgt_vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.tgt_embed.weight
        self.apply(gpt2_init)

    def _embed(self, table: nn.Embedding, ids: Tensor, start: int | Tensor = 0) -> Tensor:
        """ids (B, T) from position `start` (an int, or (B,) per row) -> (B, T, C)."""
        T = ids.size(1)
        last = int(start.max()) if isinstance(start, Tensor) else start
        if last + T > self.max_length:
            raise SeqlabError(f"sequence of {last + T} tokens is longer than model.context_length ({self.max_length})")
        pos = torch.arange(T, device=ids.device)
        pos = start[:, None] + pos if isinstance(start, Tensor) else pos + start  # (B, T) or (T,)
        p = self.pos_embed(pos) if hasattr(self, "pos_embed") else self.pos_table[pos]
        return self.drop(table(ids) * self.embed_scale + p)  # (B, T, C)

    def encode(self, src: Tensor, src_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """src (B, S) -> memory LN_enc(x) (B, S', C) and the key mask (B, 1, 1, S'); S' <= S trims padding."""
        src, mask, _ = source_batch(src, src_mask, self.pad_id)
        mask = mask[:, None, None, :]
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.ln_enc(x), mask

    def _decode(self, tgt_in: Tensor, memory: Tensor, mask: Tensor, weights_of: int | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoder over tgt_in (B, T) -> logits (B, T, V) (+ cross weights of layer `weights_of`)."""
        y, weights = self._embed(self.tgt_embed, tgt_in), None
        for i, layer in enumerate(self.decoder):
            h = layer.ln_1(y)
            y, w = layer(y, layer.self_attn.keys_values(h), None, True, layer.cross_attn.keys_values(memory), mask,
                         need_weights=i == weights_of)
            weights = w if i == weights_of else weights
        return self.lm_head(self.ln_dec(y)), weights

    def forward(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor, targets: Tensor | None = None
                ) -> Tensor | tuple[Tensor, Tensor]:
        """src (B, S), tgt_in (B, T) = BOS + target -> logits (B, T, V); with targets (B, T) also the mean
        cross-entropy over positions != IGNORE_INDEX."""
        memory, mask = self.encode(src, src_mask)
        logits, _ = self._decode(tgt_in, memory, mask)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    # ------------------------------------------------------------------ decoder-state protocol

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int
                ) -> tuple[Tensor, TransformerDecoderState]:
        """Encode the source (B, S), cache every layer's cross keys/values, feed BOS -> logits (B, V)."""
        memory, mask = self.encode(input_ids, attention_mask)
        cross = [layer.cross_attn.keys_values(memory) for layer in self.decoder]
        if max_new_tokens + 1 > self.max_length:
            raise SeqlabError(f"max_new_tokens ({max_new_tokens}) + BOS exceeds the target positions of this model "
                              f"(model.context_length = {self.max_length})")
        state = TransformerDecoderState(StaticKVCache(len(self.decoder), max_new_tokens + 1), cross, mask, 0)
        bos = torch.full((input_ids.size(0),), self.bos_id, dtype=torch.long, device=input_ids.device)
        return self.step(bos, state)

    def step(self, tokens: Tensor, state: TransformerDecoderState) -> tuple[Tensor, TransformerDecoderState]:
        """tokens (B,) at target position `state.pos` -> logits (B, V); the cache gains one position."""
        if state.pos >= state.cache.max_len:
            raise SeqlabError(f"target longer than the {state.cache.max_len} positions prefill allocated")
        slots = torch.arange(state.cache.max_len, device=tokens.device)  # (S_t,)
        seen = slots <= state.pos
        if state.offset is None:
            y = self._embed(self.tgt_embed, tokens[:, None], start=state.pos)  # (B, 1, C)
            seen = seen[None, None, None, :]  # (1, 1, 1, S_t)
        else:  # rows of a merged batch start at their own slot
            y = self._embed(self.tgt_embed, tokens[:, None], start=state.pos - state.offset)
            seen = (seen & (slots >= state.offset[:, None]))[:, None, None, :]  # (B, 1, 1, S_t)
        slot = torch.tensor([state.pos], device=tokens.device)
        for i, layer in enumerate(self.decoder):
            k, v = layer.self_attn.keys_values(layer.ln_1(y))
            keys, values = state.cache.write(i, k, v, slot)
            y, _ = layer(y, (keys, values), seen, False, state.cross[i], state.mask)
        state.pos += 1
        return self.lm_head(self.ln_dec(y))[:, 0], state

    def reorder_state(self, state: TransformerDecoderState, index: Tensor) -> TransformerDecoderState:
        index = index.to(state.mask.device)
        cross = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state.cross]
        if state.offset is None:
            return TransformerDecoderState(state.cache.reorder(index), cross, reorder_rows(state.mask, index), state.pos)
        return TransformerDecoderState(state.cache.reorder(index, state.pos), cross, reorder_rows(state.mask, index),
                                       state.pos, state.offset.index_select(0, index))

    def merge_states(self, a: TransformerDecoderState, b: TransformerDecoderState) -> TransformerDecoderState:
        """Rows of `a`, then rows of `b` (continuous batching), in a self-attention cache of the model's target
        positions; the sources padded to the longer one (masked). As in TransformerLM, all rows write at one
        slot: the state that has written fewer is shifted right (`offset` keeps each row's target positions)."""
        filled_a = a.pos if a.mask.size(0) else 0  # an empty batch starts over
        pos = max(filled_a, b.pos)
        cache = a.cache.merge(b.cache, pos - filled_a, pos - b.pos, filled_a, b.pos, self.max_length)
        S = max(a.mask.size(-1), b.mask.size(-1))
        cross = [tuple(torch.cat([_pad_source(x, S, dim=2), _pad_source(y, S, dim=2)]) for x, y in zip(ka, kb, strict=True))
                 for ka, kb in zip(a.cross, b.cross, strict=True)]  # per layer (Ba + Bb, nh, S, hs) keys, values
        mask = torch.cat([_pad_source(a.mask, S, dim=3), _pad_source(b.mask, S, dim=3)])  # (Ba + Bb, 1, 1, S)
        offsets = [s.offset if s.offset is not None else s.mask.new_zeros(s.mask.size(0), dtype=torch.long)
                   for s in (a, b)]
        offset = torch.cat([offsets[0] + pos - filled_a, offsets[1] + pos - b.pos])
        return TransformerDecoderState(cache, cross, mask, pos, offset)

    def make_room(self, state: TransformerDecoderState) -> TransformerDecoderState:
        """Before a step of a merged batch: when the shared slot has reached the end of the cache, shift every
        row left by the smallest `offset` (see TransformerLM.make_room)."""
        if state.pos < state.cache.max_len or state.offset is None:
            return state
        first = int(state.offset.min())
        if first == 0:
            raise SeqlabError(f"no room left in the decoder cache of {state.pos} positions: a row has filled it")
        state.cache.shift(-first, state.pos)
        state.pos -= first
        state.offset -= first
        return state

    @torch.no_grad()
    def attention_weights(self, src: Tensor, tgt: Tensor, layer: int = -1, head: int | None = None) -> Tensor:
        """src (S,), tgt (T,) a generated target -> (T, S) cross-attention of decoder `layer` (negative counts
        from the last), one `head` or (None) the average over heads; row t is the step predicting tgt[t]."""
        n_layer, n_head = len(self.decoder), self.decoder[0].cross_attn.n_head
        if not -n_layer <= layer < n_layer:
            raise SeqlabError(f"layer {layer} out of range: the decoder has {n_layer} layers (0..{n_layer - 1})")
        if head is not None and not 0 <= head < n_head:
            raise SeqlabError(f"head {head} out of range: the model has {n_head} heads (0..{n_head - 1})")
        memory, mask = self.encode(src[None], None)
        tgt_in = torch.cat([torch.tensor([self.bos_id], device=tgt.device), tgt[:-1]])[None]
        _, weights = self._decode(tgt_in, memory, mask, weights_of=layer % n_layer)  # (1, nh, T, S)
        weights = weights[0]
        return weights.mean(0) if head is None else weights[head]


def _pad_source(t: Tensor, S: int, dim: int) -> Tensor:
    """`t` with its source dimension `dim` (S' positions) padded to S with zeros (False: masked)."""
    if t.size(dim) == S:
        return t
    out = t.new_zeros(*t.shape[:dim], S, *t.shape[dim + 1:])
    out.narrow(dim, 0, t.size(dim)).copy_(t)
    return out


@register("seq2seq_transformer")
def build_seq2seq_transformer(cfg: ModelConfig, vocab_size: int, *, pad_id: int, bos_id: int, eos_id: int,
                              src_vocab_size: int | None = None, **_: int) -> Seq2SeqTransformer:
    """`src_vocab_size` (default `vocab_size`) gives the source its own vocabulary (then share_embeddings=false)."""
    if cfg.positions == "rotary":
        raise ConfigError("model.positions: seq2seq_transformer supports learned or sinusoidal, not rotary")
    src_vocab_size = src_vocab_size or vocab_size
    if cfg.share_embeddings and src_vocab_size != vocab_size:
        raise ConfigError("model.share_embeddings needs one vocabulary for source and target; set it to false")
    return Seq2SeqTransformer(src_vocab_size, vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                              context_length=cfg.context_length, dropout=cfg.dropout, positions=cfg.positions,
                              activation=cfg.activation, bias=cfg.bias, share_embeddings=cfg.share_embeddings,
                              tie_embeddings=cfg.tie_embeddings, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id,
                              head_dim=cfg.head_dim, mlp_width=cfg.mlp_width)
