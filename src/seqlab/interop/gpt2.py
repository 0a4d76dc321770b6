"""Hugging Face GPT-2 <-> seqlab TransformerLM.

seqlab's TransformerLM uses GPT-2's parameter names, so the conversion is a copy in which GPT-2's
Conv1D weights (stored (in, out)) are transposed into nn.Linear weights ((out, in)):

    transformer.h.N.attn.c_attn.weight   (C, 3C)  ->  (3C, C)
    transformer.h.N.attn.c_proj.weight   (C, C)   ->  (C, C)^T
    transformer.h.N.mlp.c_fc.weight      (C, 4C)  ->  (4C, C)
    transformer.h.N.mlp.c_proj.weight    (4C, C)  ->  (C, 4C)

GPT-2's architecture, in seqlab's terms: learned positions, gelu_new, biases everywhere, tied
embeddings, LayerNorm eps 1e-5, MLP width 4C. `from_hf_gpt2` refuses HF configs outside what
TransformerLM computes; `to_hf_gpt2` refuses seqlab models GPT-2 cannot express. Both say why.
"""

from __future__ import annotations

from typing import Any

import torch

from seqlab.errors import SeqlabError
from seqlab.models.transformer_lm import TransformerLM

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# HF activation_function -> TransformerLM activation (gelu_pytorch_tanh is gelu_new's formula in C)
HF_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


def from_hf_gpt2(hf_model: Any) -> TransformerLM:
    """A TransformerLM (eval mode, the HF model's dtype) computing the same logits as `hf_model` (GPT2LMHeadModel)."""
    config = getattr(hf_model, "config", None)
    if getattr(config, "model_type", None) != "gpt2" or not hasattr(hf_model, "lm_head"):
        raise SeqlabError(f"expected a Hugging Face GPT2LMHeadModel, got {type(hf_model).__name__}")
    _check_hf_config(config)
    weights = hf_model.state_dict()
    tied = hf_model.lm_head.weight is hf_model.transformer.wte.weight
    model = TransformerLM(config.vocab_size, n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                          context_length=config.n_positions, dropout=config.resid_pdrop, positions="learned",
                          activation=HF_ACTIVATIONS[config.activation_function], bias=True, tie_embeddings=tied)
    model.to(hf_model.transformer.wte.weight.dtype)
    model.load_state_dict({name: _conv1d_to_linear(name, weights[name]) for name in model.state_dict()})
    return model.eval()


def to_hf_gpt2(model: TransformerLM, bos_token_id: int | None = None, eos_token_id: int | None = None) -> Any:
    """A Hugging Face GPT2LMHeadModel (same dtype and train/eval mode) with `model`'s weights."""
    _check_gpt2_shaped(model)
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=model.vocab_size, n_positions=model.context_length, n_embd=model.n_embd,
                        n_layer=model.n_layer, n_head=model.n_head, activation_function="gelu_new",
                        resid_pdrop=model.dropout, embd_pdrop=model.dropout, attn_pdrop=model.dropout,
                        layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                        bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    hf_model = GPT2LMHeadModel(config)
    weights = {name: _conv1d_to_linear(name, t).contiguous() for name, t in model.state_dict().items()}
    hf_model.to(model.lm_head.weight.dtype)
    hf_model.load_state_dict(weights, strict=True)
    return hf_model.train(model.training)


def _conv1d_to_linear(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Conv1D (in, out) <-> Linear (out, in): a transpose, its own inverse."""
    return tensor.t() if name.endswith(CONV1D_SUFFIXES) else tensor


def _check_hf_config(config: Any) -> None:
    problems = []
    if config.activation_function not in HF_ACTIVATIONS:
        problems.append(f"activation_function {config.activation_function!r} (supported: {', '.join(HF_ACTIVATIONS)})")
    if config.n_inner not in (None, 4 * config.n_embd):
        problems.append(f"n_inner {config.n_inner} (the MLP width must be 4 * n_embd = {4 * config.n_embd})")
    if config.layer_norm_epsilon != 1e-5:
        problems.append(f"layer_norm_epsilon {config.layer_norm_epsilon} (must be 1e-5)")
    if not config.scale_attn_weights or config.scale_attn_by_inverse_layer_idx:
        problems.append("attention scaling other than 1/sqrt(head size)")
    if config.add_cross_attention:
        problems.append("cross-attention layers")
    if problems:
        raise SeqlabError(f"cannot convert this GPT-2 to a seqlab TransformerLM: {'; '.join(problems)}")


def _check_gpt2_shaped(model: Any) -> None:
    if not isinstance(model, TransformerLM):
        raise SeqlabError(f"only a seqlab TransformerLM can become a GPT-2, got {type(model).__name__}")
    problems, fixes = [], []  # what differs from GPT-2, and the config key that makes a run GPT-2-shaped
    if model.positions != "learned":
        problems.append(f"positions are {model.positions!r} (GPT-2 has a learned position table)")
        fixes.append("model.positions=learned")
    if model.activation != "gelu_new":
        problems.append(f"activation is {model.activation!r} (GPT-2 uses gelu_new)")
        fixes.append("model.activation=gelu_new")
    if not model.bias:
        problems.append("it has no biases (GPT-2 has biases in every linear layer and LayerNorm)")
        fixes.append("model.bias=true")
    if not model.tie_embeddings:
        problems.append("its embeddings are untied (GPT-2 ties the input embedding and the output layer)")
        fixes.append("model.tie_embeddings=true")
    if model.n_head * model.head_dim != model.n_embd or model.mlp_width != 4 * model.n_embd:
        raise SeqlabError(f"this model was pruned (attention width {model.n_head * model.head_dim}, MLP width "
                          f"{model.mlp_width}, model width {model.n_embd}); GPT-2 needs n_head * head size = n_embd and "
                          "an MLP of 4 * n_embd: export the run it was pruned from, or prune without --structured")
    if problems:
        raise SeqlabError(f"this model does not have GPT-2's architecture: {'; '.join(problems)}; a run trained "
                          f"with {' '.join('--set ' + fix for fix in fixes)} can be exported")
