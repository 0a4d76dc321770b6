"""Prompt ids (with the label hook) and left padding."""

from __future__ import annotations

import pytest

from seqlab.data.tokenizers import CharTokenizer
from seqlab.decode import build_prompt_ids, left_pad
from seqlab.errors import SeqlabError


@pytest.fixture
def tok():
    return CharTokenizer.train(["abc"])


def test_plain_prompt_and_empty_prompt(tok):
    assert build_prompt_ids(tok, "ab") == tok.encode("ab")
    assert build_prompt_ids(tok, "") == [tok.bos_id]


def test_label_token_is_prepended(tok):
    tok.add_special_tokens(["<label:pos>"])
    assert build_prompt_ids(tok, "ab", label="pos") == [tok.token_to_id("<label:pos>")] + tok.encode("ab")
    with pytest.raises(SeqlabError, match="unknown label 'neg'.*<label:pos>"):
        build_prompt_ids(tok, "ab", label="neg")


def test_label_on_an_unlabelled_run(tok):
    with pytest.raises(SeqlabError, match="not trained with labels"):
        build_prompt_ids(tok, "ab", label="pos")


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(SeqlabError):
        left_pad([[1], []], pad_id=0)
