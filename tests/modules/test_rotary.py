"""Rotary embedding against Hugging Face Llama's implementation, and its relative-position property."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from seqlab.errors import SeqlabError
from seqlab.modules.rotary import RotaryEmbedding, apply_rotary


def test_matches_hugging_face_llama():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)  # (B, nh, T, hs)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]])  # the second row is left-padded
    hf_cos, hf_sin = LlamaRotaryEmbedding(LlamaConfig(hidden_size=32, num_attention_heads=4))(q, positions)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    cos, sin = RotaryEmbedding(8)(positions)
    torch.testing.assert_close(apply_rotary(q, cos, sin), hf_q)
    torch.testing.assert_close(apply_rotary(k, cos, sin), hf_k)


def test_scores_depend_only_on_the_distance():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rope(torch.tensor([pq]))
        ck, sk = rope(torch.tensor([pk]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(7, 3), score(104, 100))
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_odd_head_size_is_refused():
    with pytest.raises(SeqlabError, match="even head size"):
        RotaryEmbedding(7)
