"""A GPT-style decoder-only Transformer language model (pre-LayerNorm) with a static KV cache.

    x_0    = E[idx] + P[pos]                      (learned positions; rotary: x_0 = E[idx])
    block:   x = x + Attn(LN_1(x));  x = x + MLP(LN_2(x))
    logits = LN_f(x) E^T                          (tied embeddings; untied: LN_f(x) W_out^T)

    Attn(x) = concat_h softmax(Q_h K_h^T / sqrt(hs) + M) V_h  W_proj,   [Q K V] = x W_qkv
    MLP(x)  = act(x W_fc) W_proj,   act = gelu | gelu_new (GPT-2's tanh approximation) | relu

with nh heads of width hs (default C / nh; head-pruned models keep hs and have fewer heads, so the
attention's inner width nh * hs is below C) and an MLP hidden width of 4C (or fewer, neuron-pruned).

M is the causal mask (plus padding, when decoding left-padded prompts); with rotary positions Q and
K are rotated by position (seqlab.modules.rotary) instead of adding P. Attention runs through
`F.scaled_dot_product_attention` (flash kernels on GPU), or through the `attention` a caller of `step`
passes (the compiled decode step: seqlab.decode.step_attention). Parameter names follow Hugging Face's
GPT-2 (`transformer.h.0.attn.c_attn.weight`, ...), so `seqlab.interop` converts by transposing
GPT-2's Conv1D weights.

`model(idx)` returns logits (B, T, V); `model(idx, targets)` returns `(logits, loss)`, the loss being
the mean cross-entropy over targets != -100. Decoding uses the protocol of seqlab.decode.state:
`prefill` fills a static KV cache of prompt + max_new_tokens slots, `step` writes one slot in place;
continuous batching merges states (`merge_states`) and frees slots when the cache is full (`make_room`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.errors import ConfigError, SeqlabError
from seqlab.models import register
from seqlab.modules.init import gpt2_init
from seqlab.modules.kv_cache import StaticKVCache, reorder_rows
from seqlab.modules.linear import FUSABLE, Linear
from seqlab.modules.packing import Packed
from seqlab.modules.rotary import RotaryEmbedding, apply_rotary

ACTIVATIONS = tuple(FUSABLE)  # gelu: x Φ(x);  gelu_new: 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)));  relu
POSITIONS = ("learned", "rotary")
Attention = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]  # (q, k, v, bool mask) -> y, as the step calls SDPA


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_dim: int, dropout: float, bias: bool, layer_idx: int):
        super().__init__()
        self.n_head, self.head_dim, self.dropout, self.layer_idx = n_head, head_dim, dropout, layer_idx
        self.c_attn = Linear(n_embd, 3 * n_head * head_dim, bias=bias)
        self.c_proj = Linear(n_head * head_dim, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, mask: Tensor | None,
                cache: StaticKVCache | None, slots: Tensor | None, attention: Attention | None = None,
                packed: Packed | None = None) -> Tensor:
        """x (B, T, C), or (N, C) `packed` tokens; mask None = plain causal, else bool (B, 1, T, S') over the
        first S' <= S cache slots. Returns x's shape."""
        qkv = self.c_attn(x)  # (B, T, 3 nh hs) or (N, 3 nh hs)
        if packed is not None:
            qkv = packed.unpack(qkv)  # (B, T, 3 nh hs): q, k, v zeros at padding
        B, T, _ = qkv.shape
        qkv = qkv.view(B, T, 3, self.n_head, self.head_dim)  # (B, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.write(self.layer_idx, k, v, slots)  # (B, nh, S, hs)
            if mask is not None and mask.shape[-1] < k.shape[2]:  # only the filled slots (prefill, CPU steps)
                k, v = k[:, :, :mask.shape[-1]], v[:, :, :mask.shape[-1]]  # (B, nh, S', hs)
        if attention is not None:
            y = attention(q, k, v, mask)  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)  # (B, T, nh * hs)
        if packed is not None:
            y = packed.pack(y)  # (N, nh * hs)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd: int, width: int, dropout: float, bias: bool, activation: str):
        super().__init__()
        self.c_fc = Linear(n_embd, width, bias=bias)
        if activation not in ACTIVATIONS:
            raise SeqlabError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.c_proj = Linear(width, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.c_fc.forward_act(x, self.activation)))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_dim: int, mlp_width: int, dropout: float, bias: bool,
                 activation: str, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=1e-5, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, head_dim, dropout, bias, layer_idx)
        self.ln_2 = nn.LayerNorm(n_embd, eps=1e-5, bias=bias)
        self.mlp = MLP(n_embd, mlp_width, dropout, bias, activation)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, mask: Tensor | None,
                cache: StaticKVCache | None, slots: Tensor | None, attention: Attention | None = None,
                packed: Packed | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, cache, slots, attention, packed)  # LayerNorm, MLP: per token
        return x + self.mlp(self.ln_2(x))


@dataclass
class TransformerState:
    """Decoding state. Every field is a tensor updated in place, so a step has static shapes and addresses."""

    cache: StaticKVCache
    key_valid: Tensor  # (B, S) bool: the cache slot holds a real (non-padding) token
    slot: Tensor  # (1,) long: the cache slot the next token is written to
    position: Tensor  # (B,) long: position id of the next token (left padding shifts it per row)


class TransformerLM(nn.Module):
    """GPT-style Transformer LM; see the module docstring for the equations and the forward contract.

    `max_length` is `context_length` for both position kinds (rotary could go further, but the model
    has only been trained on this many positions). `head_dim` None is n_embd / n_head and `mlp_width`
    None is 4 * n_embd (GPT-2's shapes); pruned models give them explicitly.
    """

    is_encoder_decoder = False
    capturable_step = True  # `step` only updates its state in place: a CUDA graph can record it

    def __init__(self, vocab_size: int, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 context_length: int = 256, dropout: float = 0.0, positions: str = "learned",
                 activation: str = "gelu", bias: bool = True, tie_embeddings: bool = True,
                 head_dim: int | None = None, mlp_width: int | None = None):
        super().__init__()
        if positions not in POSITIONS:
            raise SeqlabError(f"unknown positions {positions!r}; choose one of {', '.join(POSITIONS)}")
        if head_dim is None and n_embd % n_head:
            raise SeqlabError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.vocab_size, self.n_layer, self.n_head, self.n_embd = vocab_size, n_layer, n_head, n_embd
        self.head_dim = n_embd // n_head if head_dim is None else head_dim
        self.mlp_width = 4 * n_embd if mlp_width is None else mlp_width
        self.context_length = self.max_length = context_length
        self.dropout, self.positions, self.activation, self.bias = dropout, positions, activation, bias
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList(Block(n_embd, n_head, self.head_dim, self.mlp_width, dropout, bias, activation, i)
                            for i in range(n_layer)),
            ln_f=nn.LayerNorm(n_embd, eps=1e-5, bias=bias),
        ))
        if positions == "learned":
            self.transformer["wpe"] = nn.Embedding(context_length, n_embd)
        self.rotary = RotaryEmbedding(self.head_dim) if positions == "rotary" else None
        self.lm_head = Linear(n_embd, vocab_size, bias=False)
        self.apply(gpt2_init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        if tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    @property
    def tie_embeddings(self) -> bool:
        return self.lm_head.weight is self.transformer.wte.weight

    def _trunk(self, idx: Tensor, positions: Tensor, mask: Tensor | None = None,
               cache: StaticKVCache | None = None, slots: Tensor | None = None,
               attention: Attention | None = None, packed: Packed | None = None) -> Tensor:
        """idx (B, T), positions (T,) or (B, T) -> final hidden states (B, T, C), or (N, C) for `packed` tokens."""
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.rotary is None:
            x = x + self.transformer.wpe(positions)  # (B, T, C)
        else:
            rope = self.rotary(positions)  # cos, sin: (B or 1, 1, T, hs)
        x = self.transformer.drop(x)
        if packed is not None:
            x = packed.pack(x)  # (N, C)
        for block in self.transformer.h:
            x = block(x, rope, mask, cache, slots, attention, packed)
        return self.transformer.ln_f(x)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """idx (B, T) -> logits (B, T, V); with targets (B, T): (logits, mean cross-entropy ignoring -100)."""
        T = idx.shape[1]
        if T > self.context_length:
            raise SeqlabError(f"sequence of {T} tokens is longer than the model's context length {self.context_length}")
        logits = self.lm_head(self._trunk(idx, torch.arange(T, device=idx.device)))  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    # ------------------------------------------------------------------ decoding (seqlab.decode.state)

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                max_new_tokens: int = 0) -> tuple[Tensor, TransformerState]:
        """Run the prompt (B, T), left-padded where attention_mask is 0, into a cache of T + max_new_tokens slots.

        Positions are cumsum(mask) - 1 clamped at 0, as Hugging Face GPT-2 generates; padding slots
        are never attended to (each padding query sees only itself, which keeps its row finite).
        Returns the logits (B, V) for the token after the prompt.

        With padding, the per-token layers run on the real tokens only (seqlab.modules.packing), and the
        padding slots' keys and values are zeros.
        """
        B, T = input_ids.shape
        S, device = T + max_new_tokens, input_ids.device
        if S > self.max_length:
            raise SeqlabError(f"prompt of {T} tokens + {max_new_tokens} new tokens exceeds the model's "
                              f"context length {self.max_length}")
        real = torch.ones(B, T, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
        positions = (real.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        key_valid = torch.zeros(B, S, dtype=torch.bool, device=device)
        key_valid[:, :T] = real
        slots = torch.arange(T, device=device)  # (T,)
        causal = slots[None, :] <= slots[:, None]  # (T, T): the prompt attends to its own T slots only
        mask = (real[:, None, :] & causal) | torch.eye(T, dtype=torch.bool, device=device)  # (B, T, T)
        cache = StaticKVCache(self.n_layer, S)
        # torch.export (the ONNX prefill graph) traces the padded batch: packing's size depends on the mask's values
        packed = None if attention_mask is None or torch.compiler.is_compiling() else Packed.of(real)
        x = self._trunk(input_ids, positions, mask.unsqueeze(1), cache, slots, packed=packed)  # (B, T, C) or (N, C)
        state = TransformerState(cache, key_valid, torch.tensor([T], device=device), positions[:, -1] + 1)
        return self.lm_head(x[:, -1] if packed is None else packed.last(x)), state  # (B, V)

    def step(self, tokens: Tensor, state: TransformerState,
             attention: Attention | None = None) -> tuple[Tensor, TransformerState]:
        """Feed tokens (B,) at the state's next slot; returns logits (B, V). Updates `state` in place.

        `attention(q, k, v, mask)`, if given, replaces scaled_dot_product_attention in every layer.
        """
        state.key_valid.index_fill_(1, state.slot, True)
        valid = state.key_valid
        if valid.device.type == "cpu" and not torch.compiler.is_compiling():  # attend over the filled slots only
            valid = valid[:, :int(state.slot) + 1]  # (B, S')
        mask = valid[:, None, None, :]  # (B, 1, 1, S')
        x = self._trunk(tokens[:, None], state.position[:, None], mask, state.cache, state.slot, attention)  # (B, 1, C)
        state.slot.add_(1)
        state.position.add_(1)
        return self.lm_head(x[:, 0]), state  # (B, V)

    def reorder_state(self, state: TransformerState, index: Tensor) -> TransformerState:
        """Rows `index` (B',) of the state; in place when B' == B (the static buffers keep their addresses)."""
        filled = int(state.slot) if state.slot.device.type == "cpu" else None  # free on CPU, a sync on GPU
        return TransformerState(state.cache.reorder(index, filled), reorder_rows(state.key_valid, index), state.slot,
                                reorder_rows(state.position, index))

    def merge_states(self, a: TransformerState, b: TransformerState) -> TransformerState:
        """Rows of `a`, then rows of `b` (continuous batching: `b` is a request's prefill), in a cache of the
        model's context length. All rows write at one slot, so the state that has written fewer slots is
        shifted right until both end at the same slot; positions are per row, so moving keys and values to
        other slots changes nothing they compute. Reuses a's buffers when they have room; consumes a and b."""
        filled_a = int(a.slot) if a.position.numel() else 0  # an empty batch starts over
        filled_b = int(b.slot)
        slot = max(filled_a, filled_b)
        S = self.max_length
        cache = a.cache.merge(b.cache, slot - filled_a, slot - filled_b, filled_a, filled_b, S)
        key_valid = torch.cat([_shifted(a.key_valid[:, :filled_a], slot - filled_a, S),
                               _shifted(b.key_valid[:, :filled_b], slot - filled_b, S)])  # (Ba + Bb, S)
        return TransformerState(cache, key_valid, a.slot.new_tensor([slot]), torch.cat([a.position, b.position]))

    def make_room(self, state: TransformerState) -> TransformerState:
        """Before a step of a merged batch: when the shared slot has reached the end of the cache, shift every
        row left by the first slot any row uses (rows that joined late start further right)."""
        slot = int(state.slot)
        if slot < state.cache.max_len:
            return state
        first = int(state.key_valid[:, :slot].int().argmax(dim=1).min())  # the earliest row's first real slot
        if first == 0:
            raise SeqlabError(f"no room left in the KV cache of {slot} slots: a row has filled it")
        state.cache.shift(-first, slot)
        state.key_valid[:, :slot - first] = state.key_valid[:, first:slot].clone()
        state.key_valid[:, slot - first:] = False
        state.slot.sub_(first)
        return state


def _shifted(key_valid: Tensor, by: int, S: int) -> Tensor:
    """key_valid (B, W) moved right by `by` slots in a (B, S) mask."""
    out = key_valid.new_zeros(key_valid.size(0), S)
    out[:, by:by + key_valid.size(1)] = key_valid
    return out


@register("transformer_lm")
def build_transformer_lm(cfg: ModelConfig, vocab_size: int, **extra: int) -> TransformerLM:
    if cfg.positions not in POSITIONS:
        raise ConfigError(f"transformer_lm: model.positions must be one of {', '.join(POSITIONS)}, got {cfg.positions!r}")
    return TransformerLM(vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                         context_length=cfg.context_length, dropout=cfg.dropout, positions=cfg.positions,
                         activation=cfg.activation, bias=cfg.bias, tie_embeddings=cfg.tie_embeddings,
                         head_dim=cfg.head_dim, mlp_width=cfg.mlp_width)
