"""Continuous batching: every request decodes as it would alone, whatever joins, leaves or runs beside it.

The models' state operations (merge_states, reorder_state dropping rows, make_room) are checked on logits
against decoding each row alone; the batcher on tokens, log-probs, text and finish reasons against
generate() and stream() of each request alone, for every model kind. A row's logits in a batch differ
from its logits alone by float rounding only (matrix kernels of another batch size, attention over a
longer masked cache), so log-probs are compared to 1e-5 and tokens exactly (no near-ties in these models).
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from seqlab.data.tokenizers import CharTokenizer
from seqlab.decode import GenerationOptions, generate, stream
from seqlab.decode.batching import BatchFull, ContinuousBatch, _fill_holes
from seqlab.errors import SeqlabError
from seqlab.models.rnn_lm import RNNLanguageModel
from seqlab.models.seq2seq_rnn import Seq2SeqRNN
from seqlab.models.seq2seq_transformer import Seq2SeqTransformer
from seqlab.models.transformer_lm import TransformerLM

TEXT = "the quick brown fox jumps over the lazy dog. ABC, 0123!\n"
CONTEXT = 40
TOLERANCE = dict(rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train([TEXT])


def build(kind: str, tok) -> torch.nn.Module:
    torch.manual_seed(0)
    V, ids = tok.vocab_size, dict(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    models = {
        "transformer": lambda: TransformerLM(V, n_layer=2, n_head=2, n_embd=32, context_length=CONTEXT),
        "transformer_rotary": lambda: TransformerLM(V, n_layer=2, n_head=2, n_embd=32, context_length=CONTEXT,
                                                    positions="rotary"),
        "lstm": lambda: RNNLanguageModel(V, cell="lstm", n_layer=2, n_embd=16, hidden_size=32),
        "gru": lambda: RNNLanguageModel(V, cell="gru", n_layer=1, n_embd=16, hidden_size=32),
        "seq2seq_rnn": lambda: Seq2SeqRNN(V, V, cell="gru", n_embd=16, hidden_size=32, **ids),
        "seq2seq_rnn_bahdanau": lambda: Seq2SeqRNN(V, V, cell="lstm", n_embd=16, hidden_size=32, n_layer=2,
                                                   attention="bahdanau", **ids),
        "seq2seq_transformer": lambda: Seq2SeqTransformer(V, V, n_layer=2, n_head=2, n_embd=32,
                                                          context_length=CONTEXT, **ids),
    }
    return models[kind]().eval()


KINDS = ["transformer", "transformer_rotary", "lstm", "gru", "seq2seq_rnn", "seq2seq_rnn_bahdanau",
         "seq2seq_transformer"]


# ---------------------------------------------------------------- the models' state operations


def decode_alone(model, prompt: list[int], tokens: list[int]) -> list[torch.Tensor]:
    """Logits (V,) after the prompt and after each fed token, decoding the row by itself."""
    logits, state = model.prefill(torch.tensor([prompt]), None, len(tokens) + 1)
    out = [logits[0]]
    for token in tokens:
        logits, state = model.step(torch.tensor([token]), state)
        out.append(logits[0])
    return out


def decode_merged(model, rows: list[tuple[list[int], list[int], int]]) -> list[list[torch.Tensor]]:
    """The same, rows (prompt, tokens to feed, step it joins at) in one batch that they join (merge_states)
    and leave (reorder_state: the rows that stay in reversed order, so that rows move) as they end."""
    state, running = None, []  # running: [row, tokens fed]
    out: list[list[torch.Tensor]] = [[] for _ in rows]
    with torch.no_grad():
        for t in range(200):
            stay = [k for k, (i, fed) in enumerate(running) if fed < len(rows[i][1])]
            if len(stay) < len(running):
                stay = stay[::-1]
                state = model.reorder_state(state, torch.tensor(stay, dtype=torch.long))
                running = [running[k] for k in stay]
            if running:
                if hasattr(model, "make_room"):
                    state = model.make_room(state)
                feed = torch.tensor([rows[i][1][fed] for i, fed in running])
                logits, state = model.step(feed, state)
                for k, (i, fed) in enumerate(running):
                    out[i].append(logits[k])
                    running[k] = [i, fed + 1]
            for i, (prompt, tokens, join) in enumerate(rows):
                if join == t:
                    logits, joined = model.prefill(torch.tensor([prompt]), None, len(tokens) + 1)
                    out[i].append(logits[0])
                    state = joined if state is None else model.merge_states(state, joined)
                    running.append([i, 0])
            if t > max(r[2] for r in rows) and not running:
                return out
    raise AssertionError("the rows never ended")


@pytest.mark.parametrize("kind", KINDS)
def test_merged_states_give_every_row_its_logits_alone(kind, tok):
    model = build(kind, tok)
    g = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(5, tok.vocab_size, (n,), generator=g).tolist()  # noqa: E731
    # row 0 runs long; row 2 (longer prompt) joins a batch that has written fewer slots (the batch shifts);
    # after row 0 leaves, row 1 reaches the end of the cache (make_room shifts every row left)
    rows = [(ids(6), ids(30), 0), (ids(3), ids(33), 8), (ids(12), ids(6), 2), (ids(2), ids(4), 20)]
    with torch.no_grad():
        alone = [decode_alone(model, prompt, tokens) for prompt, tokens, _ in rows]
    merged = decode_merged(model, rows)
    for i, (expected, got) in enumerate(zip(alone, merged, strict=True)):
        assert len(got) == len(expected), i
        torch.testing.assert_close(torch.stack(got), torch.stack(expected), **TOLERANCE, msg=f"row {i}")


def test_make_room_shifts_rows_left_when_the_cache_is_full(tok):
    model = build("transformer", tok)
    # row 1 joins at slot 14 (first slot 11) and needs 36 slots: at slot 40 every row moves 11 slots left
    rows = [([5, 6, 7, 8, 9, 10], list(range(5, 35)), 0), ([11, 12, 13], list(range(6, 39)), 8)]
    slots = []
    make_room = model.make_room

    def spy(state):
        before = int(state.slot)
        state = make_room(state)
        slots.append((before, int(state.slot)))
        return state

    model.make_room = spy
    decode_merged(model, rows)
    assert [(before, after) for before, after in slots if before != after] == [(CONTEXT, CONTEXT - 11)]


def test_fill_holes_moves_only_the_last_rows():
    assert _fill_holes([False, True, False, False, True]) == [0, 3, 2]
    assert _fill_holes([True, True, False]) == [2]
    assert _fill_holes([False, False]) == [0, 1]
    assert _fill_holes([True]) == []


# ---------------------------------------------------------------- the batcher against generate() alone

GREEDY = [
    ("greedy", "the quick", dict(max_new_tokens=14), 0),
    ("penalised", "fox", dict(max_new_tokens=16, repetition_penalty=1.5, no_repeat_ngram_size=2), 3),
    ("short", "lazy", dict(max_new_tokens=1), 4),
    ("suppressed", "dog", dict(max_new_tokens=12, suppress_tokens=[5, 6, 7]), 4),
]
SAMPLED = [
    ("sampled", "a", dict(max_new_tokens=20, do_sample=True, top_k=0, seed=1), 0),
    ("nucleus", "lazy dog.", dict(max_new_tokens=18, do_sample=True, top_p=0.8, temperature=0.7, seed=2), 2),
    ("twin", "a", dict(max_new_tokens=20, do_sample=True, top_k=0, seed=1), 5),  # "sampled" again, later
    ("min_new", "dog", dict(max_new_tokens=10, min_new_tokens=4, do_sample=True, seed=9), 4),
    ("leaves", "over", dict(max_new_tokens=30, min_new_tokens=30, do_sample=True, seed=4), 1),  # removed at step 6
]


def options(tok, **kw) -> GenerationOptions:
    return GenerationOptions(eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, **kw)


def run_batch(model, tok, requests, removals=None, max_batch=16) -> dict[str, list]:
    """Each request's events when they join the batch at their steps (and leave at `removals` {step: id})."""
    batch = ContinuousBatch(model, tok, max_batch=max_batch)
    events = {rid: [] for rid, *_ in requests}
    last_join = max(join for *_, join in requests)
    for t in range(200):
        for rid, prompt, kw, join in requests:
            if join == t:
                batch.add(rid, tok.encode(prompt), options(tok, **kw))
        if removals and t in removals:
            batch.remove(removals[t])
        for event in batch.step():
            events[event.request_id].append(event)
        if t >= last_join and not len(batch):
            return events
    raise AssertionError("the batch never emptied")


def alone(model, tok, prompt: str, kw: dict) -> tuple[list[int], torch.Tensor, str]:
    ids = tok.encode(prompt)
    out = generate(model, torch.tensor([ids]), tokenizer=tok, **dataclasses.asdict(options(tok, **kw)))
    n, start = int(out.lengths[0]), 1 if model.is_encoder_decoder else len(ids)
    return out.sequences[0, start:start + n].tolist(), out.token_logprobs[0, :n], out.finish_reasons[0]


@pytest.mark.parametrize("kind", KINDS)
def test_every_request_decodes_as_it_does_alone(kind, tok):
    model = build(kind, tok)
    requests = GREEDY + SAMPLED
    events = run_batch(model, tok, requests, removals={6: "leaves"})
    for rid, prompt, kw, _ in requests:
        tokens, logprobs, reason = alone(model, tok, prompt, kw)
        got = events[rid]
        if rid == "leaves":
            assert len(got) == 5 and not got[-1].final  # steps 1 to 5: it left before step 6
            tokens, logprobs = tokens[:5], logprobs[:5]
        else:
            assert got[-1].finish_reason == reason, rid
            assert got[-1].usage.completion_tokens == len(tokens)
            assert got[-1].usage.prompt_tokens == len(tok.encode(prompt))
        assert [e.token_id for e in got] == tokens, rid
        torch.testing.assert_close(torch.tensor([e.logprob for e in got]), logprobs, **TOLERANCE)
    assert [e.token_id for e in events["twin"]] == [e.token_id for e in events["sampled"]]


@pytest.mark.parametrize("kind", ["transformer", "seq2seq_transformer", "lstm"])
def test_a_burst_of_requests_is_prefilled_together(kind, tok):
    # one prefill, left-padded; its cache is cut to the context, so once the long prompt's row ends the
    # short prompt's row (40 slots in all, the first 28 of them padding) needs make_room
    model = build(kind, tok)
    prefills = []
    prefill = model.prefill

    def spy(input_ids, attention_mask, max_new_tokens):
        prefills.append(tuple(input_ids.shape))
        return prefill(input_ids, attention_mask, max_new_tokens)

    model.prefill = spy
    long_prompt = (TEXT * 2)[:30]
    requests = [("long", long_prompt, dict(max_new_tokens=10), 0),
                ("short", "ab", dict(max_new_tokens=38, do_sample=True, seed=5), 0),
                ("middle", "the lazy", dict(max_new_tokens=20, repetition_penalty=1.2), 0)]
    events = run_batch(model, tok, requests)
    assert prefills == [(3, 30)]
    for rid, prompt, kw, _ in requests:
        tokens, logprobs, reason = alone(model, tok, prompt, kw)
        assert [e.token_id for e in events[rid]] == tokens, rid
        torch.testing.assert_close(torch.tensor([e.logprob for e in events[rid]]), logprobs, **TOLERANCE)
        assert events[rid][-1].finish_reason == reason


def test_the_text_is_streams_and_stop_strings_end_it(tok):
    model = build("transformer", tok)
    free = "".join(stream(model, tok, "the", max_new_tokens=30, eos_token_id=tok.eos_id))
    stop = free[10:12]  # a stop string the greedy text reaches at its 12th character
    requests = [("stopped", "the", dict(max_new_tokens=30, stop_strings=[stop, "zzz"]), 0),
                ("free", "the", dict(max_new_tokens=30), 2),
                ("sampled", "fox", dict(max_new_tokens=25, do_sample=True, seed=3, stop_strings=". "), 1)]
    events = run_batch(model, tok, requests)
    for rid, prompt, kw, _ in requests:
        text = stream(model, tok, prompt, **dataclasses.asdict(options(tok, **kw)))
        expected = "".join(text)
        assert "".join(e.text for e in events[rid]) == expected, rid
        assert events[rid][-1].finish_reason == text.finish_reason, rid
        torch.testing.assert_close(torch.tensor([e.logprob for e in events[rid]]),
                                   torch.tensor(text.token_logprobs), **TOLERANCE)
        assert events[rid][-1].confidence == pytest.approx(text.confidence, abs=1e-5)
    assert events["stopped"][-1].finish_reason == "stop" and "".join(e.text for e in events["stopped"]).endswith(stop)
    assert events["free"][-1].finish_reason == "length"


def test_banned_words_apply_per_row(tok):
    model = build("gru", tok)
    sampling = dict(max_new_tokens=30, do_sample=True, seed=0)
    free, _, _ = alone(model, tok, "the", sampling)
    word = re.findall(r"\w+", tok.decode(free))[0]  # a word the model says when nothing is banned
    requests = [("free", "the", sampling, 0), ("banned", "the", dict(sampling, banned_words=[word]), 0)]
    events = run_batch(model, tok, requests)
    for rid, prompt, kw, _ in requests:
        tokens, _, _ = alone(model, tok, prompt, kw)
        assert [e.token_id for e in events[rid]] == tokens, rid
    assert word in re.findall(r"\w+", "".join(e.text for e in events["free"]))
    assert word not in re.findall(r"\w+", "".join(e.text for e in events["banned"]))


def test_a_removed_or_finished_row_leaves_within_one_step(tok):
    model = build("transformer", tok)
    sizes = []
    step = model.step

    def spy(tokens, state):
        sizes.append(tokens.shape[0])
        return step(tokens, state)

    model.step = spy
    batch = ContinuousBatch(model, tok, max_batch=4)
    for rid, n in (("a", 20), ("b", 20), ("c", 3)):
        batch.add(rid, tok.encode("the"), options(tok, max_new_tokens=n))
    assert [e.request_id for e in batch.step()] == ["a", "b", "c"] and sizes == []  # first tokens: from the prefill
    batch.step()
    events = batch.step()
    assert sizes == [3, 3] and [e.request_id for e in events if e.final] == ["c"]  # c's third token ends it
    assert len(batch) == 2 and batch.free_slots == 2
    batch.step()
    batch.remove("a")
    assert len(batch) == 1
    events = batch.step()
    assert sizes == [3, 3, 2, 1] and [e.request_id for e in events] == ["b"]
    batch.remove("b")
    assert batch.step() == [] and sizes == [3, 3, 2, 1] and len(batch) == 0


def test_bad_requests(tok):
    model = build("transformer", tok)
    batch = ContinuousBatch(model, tok, max_batch=1)
    with pytest.raises(SeqlabError, match="beam search"):
        batch.add("beams", tok.encode("the"), options(tok, num_beams=2))
    with pytest.raises(SeqlabError, match="context"):
        batch.add("long", [5] * CONTEXT, options(tok))
    with pytest.raises(SeqlabError, match="at least one token"):
        batch.add("empty", [], options(tok))
    batch.add("a", tok.encode("the"), options(tok))
    with pytest.raises(SeqlabError, match="already"):
        batch.add("a", tok.encode("the"), options(tok))
    with pytest.raises(BatchFull):
        batch.add("b", tok.encode("the"), options(tok))
    batch.remove("a")
    batch.add("b", tok.encode("the"), options(tok))  # a removed request frees its slot at once


def test_a_model_without_merge_states_is_refused(tok):
    from decode_fakes import ScriptLM

    with pytest.raises(SeqlabError, match="merge_states"):
        ContinuousBatch(ScriptLM([5], tok.vocab_size), tok, max_batch=2)
