"""Models: one self-contained file per architecture, and a registry that builds them from a config.

`build_model(model_config, vocab_size)` is the only place a ModelConfig meets a module: each
architecture registers a builder that unpacks the config into the module's plain arguments.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import torch

from seqlab.config import ModelConfig
from seqlab.errors import ConfigError

# arch name -> module under seqlab.models that registers it
_ARCH_MODULES = {
    "rnn_lm": "rnn_lm",
    "transformer_lm": "transformer_lm",
    "seq2seq_rnn": "seq2seq_rnn",
    "seq2seq_transformer": "seq2seq_transformer",
}
_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}


def register(arch: str) -> Callable:
    def deco(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        _BUILDERS[arch] = fn
        return fn

    return deco


def build_model(cfg: ModelConfig, vocab_size: int, **extra: int) -> torch.nn.Module:
    """Build the architecture `cfg.arch` for a vocabulary of `vocab_size` tokens.

    `extra` carries data-dependent sizes (e.g. `pad_id`, `bos_id`, `eos_id`, `num_labels`). A model whose
    weights cannot fit this machine's memory is refused first, naming the key to shrink (see
    seqlab.models.memory; the training recipes also check the training memory on their device).
    """
    from seqlab.models.memory import check_memory

    check_memory(cfg, vocab_size, src_vocab_size=extra.get("src_vocab_size"))
    if cfg.arch not in _BUILDERS:
        if cfg.arch not in _ARCH_MODULES:
            raise ConfigError(f"unknown model.arch {cfg.arch!r}; choose one of {', '.join(_ARCH_MODULES)}")
        importlib.import_module(f"seqlab.models.{_ARCH_MODULES[cfg.arch]}")
    return _BUILDERS[cfg.arch](dataclasses.replace(cfg), vocab_size, **extra)
