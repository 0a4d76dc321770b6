"""Global attention: scores against hand computation and torch's SDPA, masks, shapes."""

import pytest
import torch
import torch.nn.functional as F

from seqlab.modules.attention import GlobalAttention, masked_softmax

KINDS = ["bahdanau", "luong-dot", "luong-general"]


def _inputs(B=3, S=6, H=8, T=None):
    torch.manual_seed(0)
    query = torch.randn(B, H) if T is None else torch.randn(B, T, H)
    memory = torch.randn(B, S, H)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    return query, memory, mask


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_single_and_sequence_queries(kind):
    attn = GlobalAttention(kind, 8, 8)
    q, memory, mask = _inputs()
    context, weights = attn(q, memory, mask)
    assert context.shape == (3, 8) and weights.shape == (3, 6)
    q_seq, _, _ = _inputs(T=4)
    context, weights = attn(q_seq, memory, mask)
    assert context.shape == (3, 4, 8) and weights.shape == (3, 4, 6)
    # a sequence of queries gives what each query gives alone
    for t in range(4):
        c_t, w_t = attn(q_seq[:, t], memory, mask)
        torch.testing.assert_close(c_t, context[:, t])
        torch.testing.assert_close(w_t, weights[:, t])


@pytest.mark.parametrize("kind", KINDS)
def test_padding_is_never_attended(kind):
    attn = GlobalAttention(kind, 8, 8)
    q, memory, mask = _inputs()
    context, weights = attn(q, memory, mask)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    noisy = memory.clone()
    noisy[~mask] = 1e3 * torch.randn_like(noisy[~mask])
    context2, weights2 = attn(q, noisy, mask)
    assert torch.equal(weights, weights2) and torch.equal(context, context2)


def test_luong_dot_equals_sdpa_with_unit_scale():
    attn = GlobalAttention("luong-dot", 8, 8)
    q, memory, mask = _inputs()
    context, _ = attn(q, memory, mask)
    ref = F.scaled_dot_product_attention(q[:, None], memory, memory, attn_mask=mask[:, None, :], scale=1.0)
    torch.testing.assert_close(context, ref[:, 0])


def test_luong_general_equals_sdpa_over_projected_keys():
    attn = GlobalAttention("luong-general", 8, 10)
    q, _, mask = _inputs()
    memory = torch.randn(3, 6, 10)
    context, _ = attn(q, memory, mask)
    keys = memory @ attn.W_a.weight.T  # h_t^T W_a h_s
    ref = F.scaled_dot_product_attention(q[:, None], keys, memory, attn_mask=mask[:, None, :], scale=1.0)
    torch.testing.assert_close(context, ref[:, 0])


def test_bahdanau_matches_the_equation_position_by_position():
    attn = GlobalAttention("bahdanau", 8, 6, attn_size=5)
    torch.manual_seed(1)
    q, memory = torch.randn(2, 8), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    context, weights = attn(q, memory, mask)
    Wq, Wk, bk, v = (p.detach() for p in (attn.W_q.weight, attn.W_k.weight, attn.W_k.bias, attn.v_a.weight[0]))
    for b in range(2):
        scores = torch.tensor([float(v @ torch.tanh(Wq @ q[b] + Wk @ memory[b, s] + bk)) if mask[b, s]
                               else float("-inf") for s in range(4)])
        expected = torch.softmax(scores, 0)
        torch.testing.assert_close(weights[b].detach(), expected)
        torch.testing.assert_close(context[b].detach(), expected @ memory[b])


def test_precomputed_keys_give_the_same_result():
    attn = GlobalAttention("luong-general", 8, 8)
    q, memory, mask = _inputs()
    assert torch.equal(attn(q, memory, mask)[0], attn(q, memory, mask, keys=attn.keys(memory))[0])


def test_masked_softmax_without_mask_is_softmax():
    scores = torch.randn(2, 3, 4)
    torch.testing.assert_close(masked_softmax(scores, None), scores.softmax(-1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="choose one of bahdanau, luong-dot, luong-general"):
        GlobalAttention("concat", 8, 8)
    with pytest.raises(ValueError, match="luong-dot needs"):
        GlobalAttention("luong-dot", 8, 6)
