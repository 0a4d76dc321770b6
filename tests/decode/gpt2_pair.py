"""The same GPT-2 weights in Hugging Face's GPT2LMHeadModel and in seqlab (imported by the parity tests)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from seqlab.interop import from_hf_gpt2
from seqlab.models.transformer_lm import TransformerLM


def spread_gpt2_pair(vocab: int, n_positions: int, n_embd: int,
                     seed: int = 1234) -> tuple[GPT2LMHeadModel, TransformerLM]:
    """Two layers, four heads, weights drawn with a large spread (initializer_range 0.5): next-token scores
    are far apart, so float rounding cannot flip an argmax or a beam ranking between implementations."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=n_embd, n_layer=2, n_head=4,
                        initializer_range=0.5, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf = GPT2LMHeadModel(config).eval()
    return hf, from_hf_gpt2(hf)
