"""How much memory a model (and its training) needs, estimated from the config before anything is built.

`parameter_count(cfg, vocab_size)` is the number of fp32 values a model holds: its parameters, plus the
one buffer that grows with a size key (seq2seq_transformer's sinusoidal table, context_length x n_embd).
It is computed from the architecture's shapes (tests/models/test_memory.py checks it against the
built models), so an absurd size (`model.n_embd=1000000000`) is refused in microseconds instead of
failing in the allocator, or hanging while a million layers are built.

    weights    = 4 bytes x parameters
    training   = 4 x weights (the weights, their gradients, AdamW's two moments)
                 + 4 bytes x micro_batch x sequence x (n_embd x n_layer + vocab)

The activation term is a lower bound (one hidden vector per token and layer, and the logits): a model
refused by it could not have trained. The sequence is context_length for language models; for
seq2seq it is taken as 1, since pairs are as long as the data makes them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
from typing import Any

from seqlab.config import ModelConfig, TrainConfig
from seqlab.errors import ConfigError

FP32 = 4  # bytes per value
TRAINING_FACTOR = 4  # weights + gradients + AdamW's exp_avg and exp_avg_sq
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def parameter_count(cfg: Any, vocab_size: int, src_vocab_size: int | None = None) -> int:
    """The values (parameters, and buffers that scale with a size key) of `cfg.arch` for this vocabulary."""
    count = {"transformer_lm": _transformer_lm, "rnn_lm": _rnn_lm, "seq2seq_rnn": _seq2seq_rnn,
             "seq2seq_transformer": _seq2seq_transformer}.get(cfg.arch)
    if count is None:
        return 0  # an architecture without an estimate: nothing is refused
    return count(cfg, vocab_size, src_vocab_size or vocab_size)


def training_bytes(cfg: Any, vocab_size: int, train: Any, world_size: int = 1, src_vocab_size: int | None = None) -> int:
    """A lower bound on the memory one training process needs: weights, gradients, AdamW, one micro-batch."""
    micro_batch = math.ceil(train.batch_size / (train.grad_accum * world_size))
    sequence = cfg.context_length if cfg.arch in ("rnn_lm", "transformer_lm") else 1
    activations = micro_batch * sequence * (cfg.n_embd * cfg.n_layer + vocab_size)
    return FP32 * (TRAINING_FACTOR * parameter_count(cfg, vocab_size, src_vocab_size) + activations)


def check_memory(cfg: ModelConfig, vocab_size: int, device: Any = "cpu", train: TrainConfig | None = None,
                 src_vocab_size: int | None = None) -> None:
    """A ConfigError, naming the key to shrink, when the model (with `train`: its training) cannot fit
    the memory of `device` (a CUDA device's, else the machine's RAM)."""
    from seqlab.device import memory_bytes

    available, where = memory_bytes(device)
    if available is None:
        return
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if train is not None else 1

    def need(c: Any, t: Any) -> int:
        if t is None:
            return FP32 * parameter_count(c, vocab_size, src_vocab_size)
        return training_bytes(c, vocab_size, t, world_size, src_vocab_size)

    sizes, batch = types.SimpleNamespace(**dataclasses.asdict(cfg)), train and types.SimpleNamespace(
        **dataclasses.asdict(train))
    total = need(sizes, batch)
    if total <= available:
        return
    key, value, default = _culprit(sizes, batch, need)
    purpose = "to train (weights, gradients, AdamW's moments and one micro-batch)" if train else \
        "for its parameters (fp32)"
    raise ConfigError(f"{key}={value} would need ~{human_bytes(total)} {purpose}; {where} has "
                      f"{human_bytes(available)}; choose a smaller {key} (the default is {default})")


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disks and the issue's 'TB' count)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _culprit(sizes: Any, batch: Any, need: Any) -> tuple[str, int, int]:
    """The size key whose reset to its default shrinks the need the most: (key, value, default)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    keys = [("model", name) for name in ("n_layer", "n_embd", "hidden_size", "context_length")]
    if batch is not None:
        keys.append(("train", "batch_size"))
        defaults["batch_size"] = TrainConfig.batch_size
    best, best_need = keys[0], None
    for section, name in keys:
        target = sizes if section == "model" else batch
        value = getattr(target, name)
        setattr(target, name, min(value, defaults[name]))
        smaller = need(sizes, batch)
        setattr(target, name, value)
        if best_need is None or smaller < best_need:
            best, best_need = (section, name), smaller
    section, name = best
    return f"{section}.{name}", getattr(sizes if section == "model" else batch, name), defaults[name]


# ----------------------------------------------------------------------------- per architecture


def _layer_norm(c: Any) -> int:
    return c.n_embd * (2 if c.bias else 1)


def _widths(c: Any) -> tuple[int, int, int]:
    """A Transformer's head width, attention inner width (n_head * head width) and MLP hidden width."""
    head_dim = c.n_embd // c.n_head if c.head_dim is None else c.head_dim
    return head_dim, c.n_head * head_dim, 4 * c.n_embd if c.mlp_width is None else c.mlp_width


def _transformer_lm(c: Any, vocab: int, _: int) -> int:
    C, bias = c.n_embd, int(c.bias)
    head_dim, A, M = _widths(c)
    attention = 4 * C * A + bias * (3 * A + C)  # qkv (C -> 3A), proj (A -> C)
    mlp = 2 * C * M + bias * (M + C)  # up (C -> M), down (M -> C)
    block = attention + mlp + 2 * _layer_norm(c)
    positions = c.context_length * C if c.positions == "learned" else head_dim // 2  # table | inv_freq
    head = 0 if c.tie_embeddings else vocab * C
    return vocab * C + positions + c.n_layer * block + _layer_norm(c) + head


def _rnn(gates: int, n_input: int, hidden: int, n_layer: int, directions: int = 1) -> int:
    """torch's nn.RNN/GRU/LSTM: per layer and direction, W_ih (g·H, in), W_hh (g·H, H) and two biases."""
    first = gates * hidden * (n_input + hidden) + 2 * gates * hidden
    later = gates * hidden * (hidden * directions + hidden) + 2 * gates * hidden
    return directions * (first + (n_layer - 1) * later)


def _rnn_lm(c: Any, vocab: int, _: int) -> int:
    E, H = c.n_embd, c.hidden_size
    recurrent = _rnn(GATES[c.cell], E, H, c.n_layer)
    if c.tie_embeddings:  # the output layer shares the embedding; a projection H -> E when they differ
        return vocab * E + recurrent + (H * E if H != E else 0) + vocab
    return vocab * E + recurrent + H * vocab + vocab


def _seq2seq_rnn(c: Any, vocab: int, src_vocab: int) -> int:
    E, H, gates = c.n_embd, c.hidden_size, GATES[c.cell]
    directions = 2 if c.bidirectional else 1
    embeddings = src_vocab * E + (0 if c.share_embeddings else vocab * E)
    encoder = _rnn(gates, E, H // directions, c.n_layer, directions)
    feeds = c.attention == "bahdanau" or (c.input_feeding and c.attention.startswith("luong"))
    decoder = _rnn(gates, E + (H if feeds else 0), H, c.n_layer)
    attention = {"none": 0, "luong-dot": 0, "luong-general": H * H, "bahdanau": 2 * H * H + 2 * H}[c.attention]
    combine = 0 if c.attention == "none" else 2 * H * H  # W_c [context; h] -> attentional vector
    if c.tie_embeddings:
        head = H * E if H != E else 0
    else:
        head = H * vocab + vocab
    return embeddings + encoder + decoder + attention + combine + head


def _seq2seq_transformer(c: Any, vocab: int, src_vocab: int) -> int:
    C, bias = c.n_embd, int(c.bias)
    _, A, M = _widths(c)
    attention = 4 * C * A + bias * (3 * A + C)  # q (C -> A), kv (C -> 2A), proj (A -> C)
    mlp = 2 * C * M + bias * (M + C)
    encoder = attention + mlp + 2 * _layer_norm(c)
    decoder = 2 * attention + mlp + 3 * _layer_norm(c)
    embeddings = src_vocab * C + (0 if c.share_embeddings else vocab * C)
    positions = c.context_length * C  # learned table, or the sinusoidal buffer
    head = 0 if c.tie_embeddings else vocab * C
    return embeddings + positions + c.n_layer * (encoder + decoder) + 2 * _layer_norm(c) + head
