"""Transformer encoder-decoder: parity with torch.nn.Transformer (pre-LN), cache, masks, reordering."""

import pytest
import torch
import torch.nn.functional as F

from seqlab.config import ModelConfig
from seqlab.errors import ConfigError, SeqlabError
from seqlab.models import build_model
from seqlab.models.seq2seq_transformer import IGNORE_INDEX, Seq2SeqTransformer, sinusoids

V, PAD, BOS, EOS = 19, 0, 2, 3


def _model(**kw):
    torch.manual_seed(0)
    args = dict(n_layer=2, n_head=2, n_embd=16, context_length=16, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    return Seq2SeqTransformer(V, V, **(args | kw)).eval()


def _batch():
    torch.manual_seed(1)
    src = torch.randint(4, V, (3, 7))
    src[1, 5:] = PAD
    src[2, 2:] = PAD
    tgt_in = torch.randint(4, V, (3, 6))
    tgt_in[:, 0] = BOS
    return src, tgt_in


def _torch_reference(model: Seq2SeqTransformer) -> torch.nn.Transformer:
    """torch.nn.Transformer (norm_first) carrying our weights: q/kv -> in_proj, up/down -> linear1/linear2."""
    C = model.n_embd
    ref = torch.nn.Transformer(C, model.decoder[0].self_attn.n_head, len(model.encoder), len(model.decoder), 4 * C,
                               dropout=0.0, activation="gelu", batch_first=True, norm_first=True).eval()

    def attn(dst, src):
        dst.in_proj_weight.data = torch.cat([src.q.weight, src.kv.weight])
        dst.in_proj_bias.data = torch.cat([src.q.bias, src.kv.bias])
        dst.out_proj.load_state_dict(src.proj.state_dict())

    def mlp(dst, src):
        dst.linear1.load_state_dict(src.up.state_dict())
        dst.linear2.load_state_dict(src.down.state_dict())

    for dst, src in zip(ref.encoder.layers, model.encoder, strict=True):
        attn(dst.self_attn, src.attn)
        mlp(dst, src.mlp)
        dst.norm1.load_state_dict(src.ln_1.state_dict())
        dst.norm2.load_state_dict(src.ln_2.state_dict())
    for dst, src in zip(ref.decoder.layers, model.decoder, strict=True):
        attn(dst.self_attn, src.self_attn)
        attn(dst.multihead_attn, src.cross_attn)
        mlp(dst, src.mlp)
        for i in (1, 2, 3):
            getattr(dst, f"norm{i}").load_state_dict(getattr(src, f"ln_{i}").state_dict())
    ref.encoder.norm.load_state_dict(model.ln_enc.state_dict())
    ref.decoder.norm.load_state_dict(model.ln_dec.state_dict())
    return ref


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_logits_match_torch_nn_transformer(positions):
    model = _model(positions=positions)
    src, tgt_in = _batch()
    ref = _torch_reference(model)
    with torch.no_grad():
        out = ref(model._embed(model.src_embed, src), model._embed(model.tgt_embed, tgt_in),
                  tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.bool),
                  src_key_padding_mask=src == PAD, memory_key_padding_mask=src == PAD, tgt_is_causal=True)
        expected = model.lm_head(out)
    torch.testing.assert_close(model(src, None, tgt_in), expected, atol=1e-5, rtol=1e-5)


def test_cached_decoding_equals_the_teacher_forced_forward():
    model = _model()
    src, tgt_in = _batch()
    logits, state = model.prefill(src, None, 6)
    steps = [logits]
    for t in range(1, 6):
        logits, state = model.step(tgt_in[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), model(src, None, tgt_in), atol=1e-5, rtol=1e-5)


def test_padding_is_never_attended_and_the_decoder_is_causal():
    model = _model()
    src, tgt_in = _batch()
    mask = src != PAD
    noisy = torch.where(mask, src, torch.randint(4, V, src.shape))
    logits = model(src, mask, tgt_in)
    assert torch.equal(logits, model(noisy, mask, tgt_in))
    left = torch.stack([torch.cat([r[r == PAD], r[r != PAD]]) for r in src])  # the same sources, left-padded
    torch.testing.assert_close(model(left, left != PAD, tgt_in), logits)
    future = tgt_in.clone()
    future[:, 4:] = 5
    torch.testing.assert_close(model(src, mask, future)[:, :4], logits[:, :4])


def test_reorder_state_follows_the_index():
    model = _model()
    src, tgt_in = _batch()
    index = torch.tensor([1, 1, 2, 0])
    _, state = model.prefill(src, None, 4)
    logits, _ = model.step(tgt_in[:, 1], state)
    _, state = model.prefill(src, None, 4)
    reordered, _ = model.step(tgt_in[index, 1], model.reorder_state(state, index))
    torch.testing.assert_close(reordered, logits[index], atol=1e-6, rtol=1e-6)


def test_loss_ignores_padding():
    model = _model()
    src, tgt_in = _batch()
    targets = torch.randint(4, V, (3, 6))
    targets[1, 2:] = IGNORE_INDEX
    logits, loss = model(src, None, tgt_in, targets)
    keep = targets != IGNORE_INDEX
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], targets[keep]))


def test_attention_weights_by_layer_and_head():
    model = _model()
    src, tgt = torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11, EOS])
    mean = model.attention_weights(src, tgt)
    assert mean.shape == (3, 5)
    torch.testing.assert_close(mean.sum(-1), torch.ones(3))
    heads = torch.stack([model.attention_weights(src, tgt, layer=1, head=h) for h in range(2)])
    torch.testing.assert_close(heads.mean(0), mean)
    with pytest.raises(SeqlabError, match="layer 2 out of range"):
        model.attention_weights(src, tgt, layer=2)
    with pytest.raises(SeqlabError, match="head 5 out of range"):
        model.attention_weights(src, tgt, head=5)


def test_sinusoids_follow_the_formula():
    table = sinusoids(10, 6)
    assert table[3, 2] == pytest.approx(torch.sin(torch.tensor(3 / 10000 ** (2 / 6))).item(), abs=1e-6)
    assert table[3, 3] == pytest.approx(torch.cos(torch.tensor(3 / 10000 ** (2 / 6))).item(), abs=1e-6)


def test_too_long_inputs_are_user_errors():
    model = _model()
    with pytest.raises(SeqlabError, match="context_length"):
        model.prefill(torch.randint(4, V, (1, 3)), None, 16)
    with pytest.raises(SeqlabError, match="longer than model.context_length"):
        model(torch.randint(4, V, (1, 17)), None, torch.tensor([[BOS]]))


def test_builder():
    cfg = ModelConfig(arch="seq2seq_transformer", n_layer=1, n_head=2, n_embd=8, context_length=12,
                      positions="sinusoidal", share_embeddings=False, tie_embeddings=False)
    model = build_model(cfg, V, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    assert model.is_encoder_decoder and model.max_length == 12 and model.src_embed is not model.tgt_embed
    with pytest.raises(ConfigError, match="learned or sinusoidal"):
        build_model(ModelConfig(arch="seq2seq_transformer", positions="rotary"), V, pad_id=PAD, bos_id=BOS,
                    eos_id=EOS)


def test_explicit_weights_path_equals_sdpa():
    """The softmax drawn in heatmaps is the one the model computes."""
    attn = _model().decoder[0].cross_attn
    torch.manual_seed(2)
    x, source = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])[:, None, None, :]
    k, v = attn.keys_values(source)
    fast, _ = attn(x, k, v, mask=mask)
    slow, weights = attn(x, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(fast, slow)
    assert weights.shape == (2, 2, 3, 5) and torch.all(weights[1, :, :, 2:] == 0)
