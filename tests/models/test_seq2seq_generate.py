"""The one decoding engine on both encoder-decoders: greedy, beam search over encoder outputs, sampling."""

import pytest
import torch

from seqlab.decode import generate
from seqlab.models.seq2seq_rnn import Seq2SeqRNN
from seqlab.models.seq2seq_transformer import Seq2SeqTransformer

V, PAD, BOS, EOS = 23, 0, 2, 3


def _models():
    torch.manual_seed(0)
    common = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS)
    rnn = Seq2SeqRNN(V, V, cell="lstm", n_embd=8, hidden_size=12, n_layer=2, attention="bahdanau", **common)
    luong = Seq2SeqRNN(V, V, cell="gru", n_embd=8, hidden_size=12, attention="luong-dot", **common)
    transformer = Seq2SeqTransformer(V, V, n_layer=2, n_head=2, n_embd=16, context_length=16, **common)
    for model in (rnn, luong, transformer):
        for p in model.parameters():  # a wide spread: no near-ties for argmax to flip on
            p.data.mul_(8.0 if p.dim() > 1 and model is not transformer else 1.0)
        model.eval()
    return {"lstm-bahdanau": rnn, "gru-luong": luong, "transformer": transformer}


MODELS = _models()


def _sources():
    torch.manual_seed(3)
    src = torch.randint(4, V, (3, 6))
    src[1, 4:] = PAD
    src[2, 2:] = PAD
    return src


def _greedy_by_hand(model, src, n):
    logits, state = model.prefill(src, None, n)
    out = []
    for _ in range(n):
        token = logits.argmax(-1)
        out.append(token)
        logits, state = model.step(token, state)
    return torch.stack(out, 1)


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_is_the_argmax_chain_and_beam_one_equals_greedy(name):
    model, src = MODELS[name], _sources()
    greedy = generate(model, src, max_new_tokens=8, do_sample=False, pad_token_id=PAD).sequences
    assert torch.equal(greedy[:, 0], torch.full((3,), BOS))  # target only, from the decoder start token
    assert torch.equal(greedy[:, 1:], _greedy_by_hand(model, src, 8))
    beam = generate(model, src, max_new_tokens=8, do_sample=False, num_beams=1, eos_token_id=EOS,
                    pad_token_id=PAD).sequences
    assert torch.equal(beam, generate(model, src, max_new_tokens=8, do_sample=False, eos_token_id=EOS,
                                      pad_token_id=PAD).sequences)


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_beam_search_equals_one_source_at_a_time(name):
    """reorder_state must move encoder outputs and masks with the beams, row by row."""
    model, src = MODELS[name], _sources()
    options = dict(max_new_tokens=7, num_beams=3, num_return_sequences=2, do_sample=False, eos_token_id=EOS,
                   pad_token_id=PAD, length_penalty=1.0)
    batched = generate(model, src, **options)
    for b in range(3):
        alone = generate(model, src[b:b + 1][:, src[b] != PAD], **options)
        rows = batched.sequences[2 * b:2 * b + 2, :alone.sequences.size(1)]
        assert torch.equal(rows, alone.sequences)
        # equal up to float rounding: 3 padded sources and one source alone go through products of other
        # shapes (torch's LSTM among them), ~1e-5 on a summed log-prob of 7 tokens
        torch.testing.assert_close(batched.sequences_scores[2 * b:2 * b + 2], alone.sequences_scores,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_seeded_sampling_is_reproducible(name):
    model, src = MODELS[name], _sources()
    a = generate(model, src, max_new_tokens=6, do_sample=True, top_k=5, seed=7, pad_token_id=PAD).sequences
    b = generate(model, src, max_new_tokens=6, do_sample=True, top_k=5, seed=7, pad_token_id=PAD).sequences
    assert torch.equal(a, b)
