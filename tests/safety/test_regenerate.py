"""Regenerate with real models trained to say listed words: a retry bans the word and repeats the text
before it exactly (greedy, or sampling with a seed), and the reply ends clean or refused within max_tries."""

from __future__ import annotations

import re

import pytest
from tiny_runs import (
    LINES,
    LM,
    RUDE,
    config_for,
    one_thread,  # noqa: F401 - an autouse fixture
    train_rude_bot,
    train_run,
    write_text_corpus,
)

from seqlab.decode import stream
from seqlab.models.loading import load_model_from_run
from seqlab.safety import ReplyPolicy, WordFilter


@pytest.fixture(scope="module")
def rude_bot(tmp_path_factory):
    """A GRU chatbot that has learnt to answer two questions with a listed word (a few seconds)."""
    run = train_rude_bot(tmp_path_factory.mktemp("rude_bot"))
    model, tok, _ = load_model_from_run(run)
    return model, tok, dict(max_new_tokens=8, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)


@pytest.fixture(scope="module")
def king_lm(tmp_path_factory):
    """A char Transformer LM that often says "king" (a second of training)."""
    root = tmp_path_factory.mktemp("king_lm")
    corpus = write_text_corpus(root / "t.txt", LINES + ["long live the king", "the king is here"])
    run = train_run(root / "run", config_for(corpus, LM, "lm", tokenizer="char", max_steps=150, lr=1e-2,
                                             warmup_steps=5))
    model, tok, _ = load_model_from_run(run)
    return model, tok, dict(max_new_tokens=40, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)


def test_the_bot_says_the_words_unfiltered(rude_bot):
    model, tok, options = rude_bot
    for question, answer in RUDE:
        assert "".join(stream(model, tok, question, **options)) == answer


@pytest.mark.parametrize("strategy", [{}, {"do_sample": True, "seed": 3}, {"do_sample": True},
                                      {"num_beams": 3}])
def test_regenerate_ends_clean_or_refused_within_max_tries(rude_bot, strategy):
    model, tok, options = rude_bot
    policy = ReplyPolicy("words", "regenerate", max_tries=3)
    for question, _ in RUDE:
        replies = policy.stream(model, tok, question, **options, **strategy)
        pieces = list(replies)
        reply = replies.reply
        assert "".join(pieces) == reply.text and 1 < reply.tries <= 3
        assert not any(word in piece for piece in pieces for word in ("bullshit", "bastard"))
        assert reply.action_taken in ("regenerated", "refused")
        if reply.action_taken == "regenerated":
            assert policy.words.find(reply.text) == [] and reply.flagged
        else:
            assert reply.text.endswith(policy.refusal) and reply.finish_reason == "content_filter"


def test_greedy_regenerate_keeps_the_text_before_the_word(rude_bot):
    model, tok, options = rude_bot
    reply = ReplyPolicy("words", "regenerate").reply(model, tok, "what do you think", **options)
    assert reply.action_taken == "regenerated" and reply.text.startswith("this is ") and reply.tries == 2


def test_one_try_refuses_and_mask_masks(rude_bot):
    model, tok, options = rude_bot
    refused = ReplyPolicy("words", "regenerate", max_tries=1).reply(model, tok, "who am i", **options)
    assert refused.text == "you are a Sorry, I can't say that." and refused.tries == 1
    masked = ReplyPolicy("words").reply(model, tok, "who am i", **options)
    assert masked.text == "you are a *******" and masked.flagged == ["bastard"]


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True}, {"do_sample": True, "temperature": 1.5}])
def test_a_retry_repeats_the_text_before_the_banned_word(king_lm, sampling):
    """The ban changes the scores only where the word would complete, and a seeded sampler draws the same
    noise at every step: so the retry's text is the first's up to the word (what regenerate has sent), and
    the retry never has the word. (The filter also flags spellings the ban does not cover, e.g. "kingg":
    regenerate's next try bans those.)"""
    model, tok, options = king_lm
    king, checked = WordFilter(["king"]), 0
    word = re.compile(r"(?<![A-Za-z0-9_])king(?![A-Za-z0-9_])", re.IGNORECASE)  # the ban's word boundaries
    for seed in range(12):
        text = "".join(stream(model, tok, "the ", **options, **sampling, seed=seed))
        found = king.find(text)
        if not found:
            continue
        retry = "".join(stream(model, tok, "the ", **options, **sampling, seed=seed, banned_words=["king"]))
        assert retry.startswith(text[:found[0].start]) and not word.search(retry), (seed, text, retry)
        checked += 1
    assert checked >= 3
