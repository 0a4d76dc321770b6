"""generate(): options, EOS padding, min/max new tokens, cached == uncached, encoder-decoders, the GPU path logic."""

from __future__ import annotations

import pytest
import torch
from decode_fakes import EOS, PAD, A, B, C, MarkovLM, ScriptLM

from seqlab.decode import GenerationOptions, generate
from seqlab.decode.graphs import SYNC_EVERY_CUDA, is_capturable, sync_interval, use_fast_path
from seqlab.errors import SeqlabError
from seqlab.models.rnn_lm import RNNLanguageModel
from seqlab.models.transformer_lm import TransformerLM


@pytest.fixture(scope="module")
def transformer():
    torch.manual_seed(0)
    return TransformerLM(11, n_layer=2, n_head=2, n_embd=16, context_length=12).eval()


@pytest.mark.parametrize("options, message", [
    (dict(num_beams=-1), "num_beams"),
    (dict(num_beams=0), "num_beams"),
    (dict(top_p=0.0, do_sample=True), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(temperature=0.0, do_sample=True), "temperature"),
    (dict(temperature=-1.0, do_sample=True), "temperature"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(min_p=2.0), "min_p"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(bad_words_ids=[[]]), "bad_words_ids"),
    (dict(suppress_tokens=[-1]), "suppress_tokens"),
    (dict(stop_strings=["x"]), "tokenizer"),
    (dict(beams=2), "unknown generation option"),
])
def test_bad_options_are_one_line_errors(transformer, options, message):
    with pytest.raises(SeqlabError, match=message) as err:
        generate(transformer, torch.tensor([[1, 2]]), **options)
    assert "\n" not in str(err.value)


def test_prompt_longer_than_the_context(transformer):
    with pytest.raises(SeqlabError, match="context of 12"):
        generate(transformer, torch.ones(1, 12, dtype=torch.long))
    with pytest.raises(SeqlabError, match="LongTensor"):
        generate(transformer, torch.ones(1, 3))


def test_generation_stops_at_the_context_length(transformer):
    out = generate(transformer, torch.ones(2, 9, dtype=torch.long), max_new_tokens=50)
    assert out.sequences.shape == (2, 12)


def test_greedy_pads_after_eos_and_stops_when_all_finished():
    # row 0 (last a) walks a -> b -> eos; row 1 (last c) keeps producing c
    model = MarkovLM({A: [0, 0, 0, .9, .1], B: [0, .8, .1, .1, 0], C: [0, .1, 0, 0, .9]})
    out = generate(model, torch.tensor([[A], [C]]), max_new_tokens=4, eos_token_id=EOS, pad_token_id=PAD)
    assert out.sequences.tolist() == [[A, B, EOS, PAD, PAD], [C, C, C, C, C]]
    out = generate(model, torch.tensor([[A], [B]]), max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD)
    assert out.sequences.tolist() == [[A, B, EOS], [B, EOS, PAD]]  # both done: cut at the longest


def test_min_new_tokens_and_forced_eos():
    model = MarkovLM({A: [0, .6, .4, 0, 0], B: [0, .6, .4, 0, 0]})
    out = generate(model, torch.tensor([[A]]), max_new_tokens=5, min_new_tokens=3, eos_token_id=EOS)
    assert out.sequences.tolist() == [[A, A, A, A, EOS]]
    out = generate(model, torch.tensor([[C]]), max_new_tokens=3, forced_eos_token_id=EOS, eos_token_id=[EOS, 99])
    assert out.sequences[0, -1].item() == EOS


def test_bad_words_are_never_generated():
    model = ScriptLM([A, B, A, B], vocab_size=5)
    out = generate(model, torch.tensor([[C]]), max_new_tokens=4, bad_words_ids=[[A, B]])
    assert out.sequences.tolist()[0][1:3] == [A, PAD]  # after a, b is banned: the next best (id 0) wins


def test_suppressed_tokens_are_never_generated():
    model = ScriptLM([A, B, A, B], vocab_size=5)
    out = generate(model, torch.tensor([[C]]), max_new_tokens=4, suppress_tokens=[B])
    assert B not in out.sequences[0, 1:].tolist()


def test_run_options_ban_unk_unless_the_config_says_not():
    from types import SimpleNamespace

    from seqlab.config import DecodeConfig
    from seqlab.decode.options import run_token_options

    tok = SimpleNamespace(eos_id=3, pad_id=0, unk_id=1)
    assert run_token_options(tok) == {"eos_token_id": 3, "pad_token_id": 0, "suppress_tokens": [1]}
    assert GenerationOptions.from_config(DecodeConfig(), tok).suppress_tokens == [1]
    assert GenerationOptions.from_config(DecodeConfig(suppress_unk=False), tok).suppress_tokens is None


def test_check_every_k_steps_is_trimmed_back():
    """The GPU loop checks for the end every k steps; the result must equal checking every step."""
    model = MarkovLM({A: [0, 0, 0, .9, .1], B: [0, .8, .1, .1, 0], C: [0, .1, 0, 0, .9]})
    prompts = torch.tensor([[A], [B], [A]])
    every = generate(model, prompts, max_new_tokens=20, eos_token_id=EOS, pad_token_id=PAD)
    lazy_model = MarkovLM({A: [0, 0, 0, .9, .1], B: [0, .8, .1, .1, 0], C: [0, .1, 0, 0, .9]})
    lazy = generate(lazy_model, prompts, max_new_tokens=20, eos_token_id=EOS, pad_token_id=PAD, sync_every=8)
    assert torch.equal(every.sequences, lazy.sequences)
    assert len(lazy_model.calls) == 7 > len(model.calls)  # it did run past the end, up to the check at step 8


def test_fast_path_selection():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    transformer = TransformerLM(5, n_layer=1, n_head=1, n_embd=4, context_length=8)
    rnn = RNNLanguageModel(5, n_layer=1, n_embd=4, hidden_size=4)
    assert is_capturable(transformer) and not is_capturable(rnn)
    assert use_fast_path(transformer, cuda) and not use_fast_path(transformer, cpu) and not use_fast_path(rnn, cuda)
    assert sync_interval(cuda, streaming=False) == SYNC_EVERY_CUDA >= 8
    assert sync_interval(cuda, streaming=True) == 1 and sync_interval(cpu, streaming=False) == 1


def uncached_greedy(model, input_ids, n):
    ids = input_ids
    for _ in range(n):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("make", [
    lambda: TransformerLM(13, n_layer=2, n_head=2, n_embd=16, context_length=32),
    lambda: TransformerLM(13, n_layer=2, n_head=2, n_embd=16, context_length=32, positions="rotary"),
    lambda: RNNLanguageModel(13, cell="lstm", n_layer=2, n_embd=8, hidden_size=16),
])
def test_cached_equals_uncached(make):
    torch.manual_seed(0)
    model = make().eval()
    for p in model.parameters():  # spread the weights: no near-ties
        p.data.mul_(8)
    prompts = torch.randint(0, 13, (4, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = uncached_greedy(model, prompts, 12)
    assert torch.equal(generate(model, prompts, max_new_tokens=12).sequences, expected)


class EncoderDecoderFake(MarkovLM):
    """Ignores the source; the decoder starts from `bos_id`."""

    is_encoder_decoder = True
    bos_id = C

    def prefill(self, input_ids, attention_mask, max_new_tokens):
        return self.log_probs[torch.full((input_ids.shape[0],), self.bos_id)], torch.zeros(input_ids.shape[0])


def test_encoder_decoder_sequences_are_the_target_from_the_start_token():
    model = EncoderDecoderFake({C: [0, .1, .9, 0, 0], A: [0, .9, .1, 0, 0]})
    source = torch.tensor([[A, B, B, A, B, A], [B, B, B, B, B, B]])
    out = generate(model, source, max_new_tokens=5, eos_token_id=EOS, pad_token_id=PAD)
    assert out.sequences.tolist() == [[C, A, EOS]] * 2
    out = generate(model, source, max_new_tokens=5, eos_token_id=EOS, pad_token_id=PAD, num_beams=2)
    assert out.sequences[:, 0].tolist() == [C, C]


def test_options_from_the_decode_config():
    from seqlab.config import DecodeConfig

    opts = GenerationOptions.from_config(DecodeConfig(top_k=7, num_beams=3), num_beams=None, top_p=0.5)
    assert (opts.top_k, opts.num_beams, opts.top_p, opts.do_sample) == (7, 3, 0.5, True)


def test_beam_search_finishes_hypotheses_at_stop_strings():
    from seqlab.data.tokenizers import CharTokenizer

    tok = CharTokenizer.train(["abcd"])
    model = ScriptLM(tok.encode("abcdcba"), tok.vocab_size, after=tok.encode("a")[0])
    out = generate(model, torch.tensor([tok.encode("d")]), max_new_tokens=7, num_beams=2, stop_strings="cd",
                   tokenizer=tok, pad_token_id=tok.pad_id)
    assert tok.decode(out.sequences[0, 1:].tolist()) == "abcd"


def test_beam_sampling_is_seeded(transformer):
    kw = dict(max_new_tokens=6, num_beams=3, do_sample=True, top_k=0, temperature=2.0, num_return_sequences=3)
    prompts = torch.tensor([[1, 2], [3, 4]])
    a = generate(transformer, prompts, seed=4, **kw)
    b = generate(transformer, prompts, seed=4, **kw)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.sequences_scores, b.sequences_scores)
    assert a.sequences.shape == (6, 8)


def test_sequences_can_be_trained_on(transformer):
    """SeqGAN feeds generated sequences back into training: they must not be inference-mode tensors."""
    seqs = generate(transformer, torch.tensor([[1, 2]]), max_new_tokens=4).sequences
    model = TransformerLM(11, n_layer=1, n_head=2, n_embd=8, context_length=12)
    _, loss = model(seqs[:, :-1], seqs[:, 1:])
    loss.backward()
    assert model.transformer.wte.weight.grad is not None


def test_finish_reason_per_sequence_is_stop_at_eos_and_length_at_the_cap():
    # row 0 ends by EOS, row 1 runs into max_new_tokens; a sequence ending by EOS exactly at the cap is "stop"
    model = MarkovLM({A: [0, 0, 0, .9, .1], B: [0, .8, .1, .1, 0], C: [0, .1, 0, 0, .9]})
    out = generate(model, torch.tensor([[A], [C]]), max_new_tokens=4, eos_token_id=EOS, pad_token_id=PAD)
    assert out.finish_reasons == ["stop", "length"]
    assert generate(model, torch.tensor([[A]]), max_new_tokens=2, eos_token_id=EOS).finish_reasons == ["stop"]
    assert generate(model, torch.tensor([[A]]), max_new_tokens=1, eos_token_id=EOS).finish_reasons == ["length"]
    lazy = generate(model, torch.tensor([[A], [C]]), max_new_tokens=4, eos_token_id=EOS, pad_token_id=PAD, sync_every=8)
    assert lazy.finish_reasons == ["stop", "length"]


def test_finish_reason_in_beam_search_and_at_stop_strings():
    from seqlab.data.tokenizers import CharTokenizer

    tok = CharTokenizer.train(["abcd"])
    model = ScriptLM(tok.encode("abcdcba"), tok.vocab_size, after=tok.eos_id)
    prompt = torch.tensor([tok.encode("d")])
    for beams in (1, 2):
        kw = dict(num_beams=beams, tokenizer=tok, pad_token_id=tok.pad_id, eos_token_id=tok.eos_id)
        assert generate(model, prompt, max_new_tokens=7, stop_strings="cd", **kw).finish_reasons == ["stop"]
        assert generate(model, prompt, max_new_tokens=3, **kw).finish_reasons == ["length"]
        assert generate(model, prompt, max_new_tokens=9, **kw).finish_reasons == ["stop"]  # EOS after "abcdcba"


def test_finish_reason_when_the_model_s_context_is_full(transformer):
    out = generate(transformer, torch.ones(2, 9, dtype=torch.long), max_new_tokens=50)
    assert out.finish_reasons == ["length", "length"]
