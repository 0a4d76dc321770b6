"""GPT-2's weight initialisation, shared by the Transformer LM and the Transformer encoder-decoder."""

from __future__ import annotations

from torch import nn


def gpt2_init(module: nn.Module) -> None:
    """Linear and embedding weights ~ N(0, 0.02), linear biases 0 (use with `model.apply`)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
