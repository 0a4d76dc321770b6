"""A few sampled continuations printed at each evaluation, through the decoder-state protocol.

Plain ancestral sampling, x_{t+1} ~ softmax(logits_t / temperature) restricted to the top k, from its
own generator so that printing samples never moves the training RNG.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def sample_continuations(model: torch.nn.Module, prompt: torch.Tensor, num_samples: int, max_new_tokens: int,
                         temperature: float, top_k: int, generator: torch.Generator) -> torch.Tensor:
    """prompt (T,) -> (num_samples, max_new_tokens) sampled token ids; `model` is in eval mode."""
    if getattr(model, "max_length", None) is not None:
        max_new_tokens = max(0, min(max_new_tokens, model.max_length - prompt.numel()))
    input_ids = prompt.unsqueeze(0).expand(num_samples, -1)  # (N, T)
    logits, state = model.prefill(input_ids, None, max_new_tokens)  # (N, V)
    out = []
    for i in range(max_new_tokens):
        logits = logits.float() / temperature
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (N, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)  # (N,)
        out.append(token)
        if i + 1 < max_new_tokens:
            logits, state = model.step(token, state)
    return torch.stack(out, dim=1) if out else prompt.new_zeros(num_samples, 0)
