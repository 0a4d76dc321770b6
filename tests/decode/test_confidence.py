"""Confidence: every generated token's log-probability under the model's own distribution, and their mean.

The reference for a token's log-probability is a teacher-forced forward pass over the generated
sequence (log_softmax of the raw logits, gathered at the next token), and for greedy search HF
transformers' `compute_transition_scores` on the raw logits of its own generate() (the GPT-2 pair of
the parity tests). A sequence's confidence is the mean over the tokens it generated, EOS included and
the fill after it excluded; with beams it is the beam score.
"""

from __future__ import annotations

import copy

import pytest
import torch
from decode_fakes import StaticRNN
from gpt2_pair import spread_gpt2_pair
from graph_emulator import generate_both

from seqlab.data.tokenizers import CharTokenizer
from seqlab.decode import generate, left_pad, stream
from seqlab.models.seq2seq_transformer import Seq2SeqTransformer
from seqlab.models.transformer_lm import TransformerLM

VOCAB, PAD, NEW = 24, 1, 10


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    model = TransformerLM(VOCAB, n_layer=2, n_head=2, n_embd=16, context_length=32).eval()
    for p in model.parameters():  # spread the weights: confident, varied distributions
        p.data.mul_(6)
    return model


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(2, VOCAB, (6, 4), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def eos(lm, prompts):
    """A token greedy decoding generates often, at different steps per row: rows really end apart."""
    new = generate(lm, prompts, max_new_tokens=NEW).sequences[:, prompts.shape[1]:].flatten()
    return int(torch.bincount(new, minlength=VOCAB).argmax())


def generated_lengths(new: torch.Tensor, eos: int | None) -> list[int]:
    """Per row of new tokens (N, new): how many it generated, up to and including the first EOS."""
    lengths = []
    for row in new.tolist():
        lengths.append(row.index(eos) + 1 if eos is not None and eos in row else len(row))
    return lengths


def teacher_forced(model, prompt: list[int], new: list[int]) -> torch.Tensor:
    """log p(new[t] | prompt, new[:t]) (len(new),) from one uncached forward pass over the whole sequence."""
    ids = torch.tensor([prompt + new])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids)[0].float(), dim=-1)  # (T, V)
    P = len(prompt)
    return log_probs[P - 1:-1].gather(1, torch.tensor(new)[:, None]).squeeze(1)


def check_against_teacher_forcing(model, prompt_rows: list[list[int]], out, eos: int | None) -> None:
    P = out.sequences.shape[1] - out.token_logprobs.shape[1]
    new = out.sequences[:, P:]
    lengths = generated_lengths(new, eos)
    assert out.lengths.tolist() == lengths
    for i, (prompt, n) in enumerate(zip(prompt_rows, lengths, strict=True)):
        expected = teacher_forced(model, prompt, new[i, :n].tolist())
        torch.testing.assert_close(out.token_logprobs[i, :n], expected, atol=1e-5, rtol=1e-5)
        assert (out.token_logprobs[i, n:] == 0).all(), "the fill after the end has log-probability 0"
        assert out.confidence[i] == pytest.approx(float(expected.mean()), abs=1e-5)


@pytest.mark.parametrize("options", [
    dict(),
    dict(pad_token_id=PAD),
    dict(do_sample=True, temperature=1.7, top_k=8, pad_token_id=PAD, seed=3),
    dict(repetition_penalty=1.5, pad_token_id=PAD),  # processors act, the raw model is scored
])
def test_token_logprobs_are_the_model_s_own(lm, prompts, eos, options):
    if options:
        options = dict(options, eos_token_id=eos)
    out = generate(lm, prompts, max_new_tokens=NEW, **options)
    assert out.token_logprobs.shape == (prompts.shape[0], out.sequences.shape[1] - prompts.shape[1])
    assert out.sequences_scores is None and len(out.confidence) == prompts.shape[0]
    check_against_teacher_forcing(lm, prompts.tolist(), out, options.get("eos_token_id"))
    if options:
        assert len(set(generated_lengths(out.sequences[:, prompts.shape[1]:], eos))) > 1, "rows should end apart"


def test_a_left_padded_batch(lm, eos):
    g = torch.Generator().manual_seed(4)
    rows = [torch.randint(2, VOCAB, (n,), generator=g).tolist() for n in (1, 4, 7, 2)]
    input_ids, mask = left_pad(rows, PAD)
    out = generate(lm, input_ids, mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    check_against_teacher_forcing(lm, rows, out, eos)


def test_an_encoder_decoder_scores_its_target():
    torch.manual_seed(2)
    model = Seq2SeqTransformer(VOCAB, VOCAB, n_layer=2, n_head=2, n_embd=16, context_length=24, pad_id=0,
                               bos_id=2).eval()
    for p in model.parameters():
        p.data.mul_(6)
    source = torch.randint(3, VOCAB, (5, 6), generator=torch.Generator().manual_seed(5))
    source[0, :2] = 0  # padding in the source
    free = generate(model, source, max_new_tokens=NEW).sequences[:, 1:].flatten()
    eos = int(torch.bincount(free, minlength=VOCAB).argmax())
    out = generate(model, source, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    new = out.sequences[:, 1:]  # after the decoder start token
    lengths = generated_lengths(new, eos)
    assert len(set(lengths)) > 1
    with torch.no_grad():
        log_probs = torch.log_softmax(model(source, None, out.sequences[:, :-1]).float(), dim=-1)  # (N, new, V)
    expected = log_probs.gather(2, new[:, :, None]).squeeze(2)  # (N, new)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out.token_logprobs[i, :n], expected[i, :n], atol=1e-5, rtol=1e-5)
        assert out.confidence[i] == pytest.approx(float(expected[i, :n].mean()), abs=1e-5)


@pytest.mark.parametrize("length_penalty", [1.0, 0.5])
def test_beam_confidence_is_the_beam_score(lm, prompts, eos, length_penalty):
    out = generate(lm, prompts, max_new_tokens=NEW, num_beams=3, num_return_sequences=2, eos_token_id=eos,
                   pad_token_id=PAD, length_penalty=length_penalty)
    assert out.confidence == out.sequences_scores.tolist()
    rows = prompts.repeat_interleave(2, dim=0).tolist()
    P = prompts.shape[1]
    lengths = generated_lengths(out.sequences[:, P:], eos)
    assert out.lengths.tolist() == lengths and min(lengths) < NEW
    for i, n in enumerate(lengths):  # the hypotheses' tokens, scored by the model as it ran
        expected = teacher_forced(lm, rows[i], out.sequences[i, P:P + n].tolist())
        torch.testing.assert_close(out.token_logprobs[i, :n], expected, atol=1e-5, rtol=1e-5)
        assert (out.token_logprobs[i, n:] == 0).all()
        # no processor acts: the beam score is the summed log-probability over length ** length_penalty
        assert out.confidence[i] == pytest.approx(float(expected.sum()) / n ** length_penalty, abs=1e-4)


def test_greedy_confidence_matches_hf_transition_scores():
    """HF's own scoring of its own greedy generate(): compute_transition_scores on the raw logits."""
    hf, ours = spread_gpt2_pair(VOCAB, n_positions=32, n_embd=32)
    ours.eval()
    prompts = torch.randint(2, VOCAB, (12, 5), generator=torch.Generator().manual_seed(7))
    free = generate(ours, prompts, max_new_tokens=NEW).sequences[:, 5:].flatten()
    eos = int(torch.bincount(free, minlength=VOCAB).argmax())  # a token greedy search makes often
    ref = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=NEW, do_sample=False,
                      eos_token_id=eos, pad_token_id=PAD, return_dict_in_generate=True, output_logits=True)
    hf_logprobs = hf.compute_transition_scores(ref.sequences, ref.logits, normalize_logits=True)  # (N, new)
    out = generate(ours, prompts, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(out.sequences, ref.sequences)
    lengths = generated_lengths(out.sequences[:, 5:], eos)
    assert min(lengths) < NEW, "some rows should end at EOS"
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out.token_logprobs[i, :n], hf_logprobs[i, :n], atol=1e-4, rtol=1e-5)
        assert out.confidence[i] == pytest.approx(float(hf_logprobs[i, :n].mean()), abs=1e-4)


@pytest.mark.parametrize("options", [
    dict(eos_token_id=2, pad_token_id=PAD),
    dict(do_sample=True, top_k=5, eos_token_id=2, seed=0),
    dict(num_beams=2, eos_token_id=2, pad_token_id=PAD),
])
@pytest.mark.parametrize("sync_every", [1, 16])
def test_the_recorded_graph_keeps_the_same_logprobs(options, sync_every):
    """The GPU fast path (here on the CPU CUDA-graph emulator) records the log-probs in the graph."""
    model = StaticRNN(13, max_length=40)  # as in test_search
    prompts = torch.randint(3, 13, (4, 5), generator=torch.Generator().manual_seed(5))
    plain, fast, step = generate_both(model, prompts, sync_every=sync_every, max_new_tokens=20, **options)
    assert torch.equal(fast.sequences, plain.sequences)
    assert torch.equal(fast.token_logprobs, plain.token_logprobs)
    assert fast.confidence == plain.confidence
    assert step.replays > 0


def test_a_stream_reports_the_confidence_of_generate():
    tok = CharTokenizer.train(["abcdefgh\n"])
    torch.manual_seed(0)
    model = TransformerLM(tok.vocab_size, n_layer=1, n_head=2, n_embd=16, context_length=32).eval()
    for p in model.parameters():
        p.data.mul_(5)
    for options in (dict(), dict(do_sample=True, seed=2), dict(num_beams=2)):
        kw = dict(max_new_tokens=12, eos_token_id=tok.eos_id, **options)
        text = stream(model, tok, "ab", **kw)
        assert text.confidence is None
        "".join(text)
        out = generate(model, torch.tensor([tok.encode("ab")]), **kw)
        n = int(out.lengths[0])
        assert text.token_logprobs == pytest.approx(out.token_logprobs[0, :n].tolist(), abs=1e-6)
        assert text.confidence == pytest.approx(out.confidence[0], abs=1e-6)
        assert text.finish_reason == out.finish_reasons[0]


def test_a_stream_cut_at_a_stop_string_scores_the_tokens_it_took():
    tok = CharTokenizer.train(["abcdefgh\n"])
    torch.manual_seed(1)
    model = TransformerLM(tok.vocab_size, n_layer=1, n_head=2, n_embd=16, context_length=40).eval()
    text = stream(model, tok, "a", max_new_tokens=30, do_sample=True, seed=0, stop_strings=["c"])
    reply = "".join(text)
    out = generate(model, torch.tensor([tok.encode("a")]), max_new_tokens=30, do_sample=True, seed=0,
                   stop_strings="c", tokenizer=tok)
    assert reply.endswith("c") and text.finish_reason == "stop"
    assert text.token_logprobs == pytest.approx(out.token_logprobs[0, :int(out.lengths[0])].tolist(), abs=1e-6)
    assert text.confidence == pytest.approx(out.confidence[0], abs=1e-6)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_graph_records_the_logprobs(lm, prompts, eos):
    """On a GPU the choice is recorded in a CUDA graph with the model's step, the end checked every 16
    tokens: the log-probs are the CPU's within kernel rounding."""
    gpu = copy.deepcopy(lm).cuda()
    for options in (dict(), dict(num_beams=3)):
        options = dict(options, max_new_tokens=2 * NEW, eos_token_id=eos, pad_token_id=PAD)
        cpu, fast = generate(lm, prompts, **options), generate(gpu, prompts.cuda(), **options)
        assert torch.equal(fast.sequences.cpu(), cpu.sequences), options
        torch.testing.assert_close(fast.token_logprobs.cpu(), cpu.token_logprobs, atol=1e-4, rtol=1e-4)
        assert fast.confidence == pytest.approx(cpu.confidence, abs=1e-4)
