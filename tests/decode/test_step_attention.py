"""seqlab.decode.step_attention: the compiled step's attention computes what scaled_dot_product_attention does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqlab.decode.step_attention import VALUE_CHUNK, step_attention
from seqlab.models.transformer_lm import TransformerLM


def test_step_attention_equals_sdpa_for_one_query():
    g = torch.Generator().manual_seed(0)
    B, nh, S, hs = 3, 2, 7, 2 * VALUE_CHUNK + 8  # a last chunk narrower than VALUE_CHUNK
    q, k, v = (torch.randn(B, nh, n, hs, generator=g) for n in (1, S, S))
    mask = torch.rand(B, 1, 1, S, generator=g) > 0.3
    mask[..., 0] = True  # every row attends to something
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(step_attention(q, k, v, mask), expected, atol=1e-6, rtol=1e-5)


def test_model_step_with_step_attention_matches_its_default_step():
    torch.manual_seed(0)
    model = TransformerLM(40, n_layer=2, n_head=2, n_embd=32, context_length=16).eval()
    ids = torch.randint(1, 40, (2, 5))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding: masked slots
    with torch.no_grad():
        _, plain = model.prefill(ids, mask, max_new_tokens=4)
        _, tuned = model.prefill(ids, mask, max_new_tokens=4)
        tokens = torch.tensor([3, 7])
        for _ in range(4):
            a, plain = model.step(tokens, plain)
            b, tuned = model.step(tokens, tuned, attention=step_attention)
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
            tokens = a.argmax(-1)
