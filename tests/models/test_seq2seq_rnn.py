"""Seq2Seq RNN: step and parallel decoding agree, padding is never seen, state reordering, builder checks."""

import pytest
import torch
import torch.nn.functional as F

from seqlab.config import ModelConfig
from seqlab.errors import ConfigError, SeqlabError
from seqlab.models import build_model
from seqlab.models.seq2seq_rnn import IGNORE_INDEX, Seq2SeqRNN

V, PAD, BOS, EOS = 17, 0, 2, 3
ATTENTIONS = ["none", "bahdanau", "luong-dot", "luong-general"]


def _model(attention="luong-general", cell="gru", **kw):
    torch.manual_seed(0)
    args = dict(cell=cell, n_embd=8, hidden_size=12, n_layer=2, attention=attention, pad_id=PAD, bos_id=BOS,
                eos_id=EOS)
    return Seq2SeqRNN(V, V, **(args | kw)).eval()


def _batch():
    torch.manual_seed(1)
    src = torch.randint(4, V, (3, 7))
    src[1, 5:] = PAD
    src[2, 2:] = PAD
    tgt_in = torch.randint(4, V, (3, 5))
    tgt_in[:, 0] = BOS
    return src, tgt_in


def _stepwise(model, src, tgt_in, mask=None):
    logits, state = model.prefill(src, mask, tgt_in.size(1))
    out = [logits]
    for t in range(1, tgt_in.size(1)):
        logits, state = model.step(tgt_in[:, t], state)
        out.append(logits)
    return torch.stack(out, 1)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_equals_prefill_then_steps(attention, cell):
    model = _model(attention, cell, input_feeding=cell != "gru")
    src, tgt_in = _batch()
    logits = model(src, None, tgt_in)
    assert logits.shape == (3, 5, V)
    torch.testing.assert_close(logits, _stepwise(model, src, tgt_in))


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padded_encoder_positions_change_nothing(attention):
    model = _model(attention, bidirectional=True)
    src, tgt_in = _batch()
    mask = src != PAD
    noisy = torch.where(mask, src, torch.randint(4, V, src.shape))
    assert torch.equal(model(src, mask, tgt_in), model(noisy, mask, tgt_in))
    # a left-padded batch is the same sources
    left = torch.stack([torch.cat([r[r != PAD].new_full((int((r == PAD).sum()),), 9), r[r != PAD]]) for r in src])
    torch.testing.assert_close(model(left, left != 9, tgt_in), model(src, None, tgt_in))


def test_loss_is_cross_entropy_ignoring_padding():
    model = _model("bahdanau")
    src, tgt_in = _batch()
    targets = torch.randint(4, V, (3, 5))
    targets[0, 3:] = IGNORE_INDEX
    logits, loss = model(src, None, tgt_in, targets)
    keep = targets != IGNORE_INDEX
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], targets[keep]))


def test_bidirectional_encoder_starts_the_decoder_from_both_final_states():
    model = _model("none", cell="gru", bidirectional=True, n_layer=1)
    src, _ = _batch()
    state = model.encode(src, None)
    lengths = (src != PAD).sum(1)
    half = 6
    for b in range(3):
        n = int(lengths[b])
        ref, ref_h = model.encoder(model.src_embed(src[b:b + 1, :n]))  # torch's GRU on the unpadded row
        torch.testing.assert_close(state.memory[b, :n], ref[0])
        assert torch.all(state.memory[b, n:] == 0)
        torch.testing.assert_close(state.hidden[0, b, :half], ref[0, n - 1, :half])  # forward: last token
        torch.testing.assert_close(state.hidden[0, b, half:], ref[0, 0, half:])  # backward: first token
        torch.testing.assert_close(state.hidden[0, b], ref_h.view(-1))


@pytest.mark.parametrize("attention", ["bahdanau", "luong-dot"])
def test_reorder_state_follows_the_index(attention):
    model = _model(attention, cell="lstm")
    src, tgt_in = _batch()
    index = torch.tensor([2, 0, 0, 1])
    _, state = model.prefill(src, None, 4)
    logits, _ = model.step(tgt_in[:, 1], state)
    _, state_again = model.prefill(src, None, 4)
    reordered, _ = model.step(tgt_in[index, 1], model.reorder_state(state_again, index))
    torch.testing.assert_close(reordered, logits[index])


def test_teacher_forcing_zero_feeds_the_models_own_argmax():
    model = _model("luong-general")
    src, tgt_in = _batch()
    sampled = model(src, None, tgt_in, teacher_forcing=0.0)
    logits, state = model.prefill(src, None, 5)
    greedy = [logits]
    for _ in range(4):
        logits, state = model.step(logits.argmax(-1), state)
        greedy.append(logits)
    torch.testing.assert_close(sampled, torch.stack(greedy, 1))
    assert torch.equal(model(src, None, tgt_in, teacher_forcing=1.0), model(src, None, tgt_in))


def test_attention_weights_are_a_distribution_per_target_token():
    model = _model("bahdanau")
    weights = model.attention_weights(torch.tensor([5, 6, 7, 8]), torch.tensor([9, 10, EOS]))
    assert weights.shape == (3, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    with pytest.raises(SeqlabError, match="no attention"):
        _model("none").attention_weights(torch.tensor([5]), torch.tensor([EOS]))


def test_tied_and_untied_embeddings():
    tied = _model(tie_embeddings=True)
    assert tied.lm_head.weight is tied.tgt_embed.weight and tied.src_embed is tied.tgt_embed
    separate = _model(share_embeddings=False, tie_embeddings=False)
    assert separate.src_embed is not separate.tgt_embed and separate.lm_head.weight is not separate.tgt_embed.weight


def test_builder_unpacks_the_config():
    cfg = ModelConfig(arch="seq2seq_rnn", cell="lstm", attention="luong-dot", n_embd=8, hidden_size=10, n_layer=1)
    model = build_model(cfg, V, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    assert isinstance(model, Seq2SeqRNN) and model.is_encoder_decoder and model.max_length is None
    assert model.attention_type == "luong-dot" and model.input_feeding
    separate = build_model(ModelConfig(arch="seq2seq_rnn", share_embeddings=False, n_embd=8, hidden_size=10), V,
                           pad_id=PAD, bos_id=BOS, eos_id=EOS, src_vocab_size=30)
    assert separate.src_embed.num_embeddings == 30 and separate.tgt_embed.num_embeddings == V


def test_builder_rejects_bad_configs():
    with pytest.raises(ConfigError, match="must be even"):
        build_model(ModelConfig(arch="seq2seq_rnn", hidden_size=11), V, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ConfigError, match="share_embeddings"):
        build_model(ModelConfig(arch="seq2seq_rnn"), V, pad_id=PAD, bos_id=BOS, eos_id=EOS, src_vocab_size=30)
