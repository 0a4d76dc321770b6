"""Conversion between seqlab models and Hugging Face transformers (GPT-2)."""

from seqlab.interop.gpt2 import from_hf_gpt2, to_hf_gpt2

__all__ = ["from_hf_gpt2", "to_hf_gpt2"]
