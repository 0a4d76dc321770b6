"""The tokens the metrics count, and the tokenizer choice (--lang, --tokenize)."""

from __future__ import annotations

import importlib.util

import pytest
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

from seqlab.errors import SeqlabError
from seqlab.eval.tokens import TOKENIZERS, bleu_tokens, resolve_tokenize


def test_tokens_are_sacrebleu_tokenizer_output_split_on_whitespace():
    text = "Hello, world! It's 3.5 km.  "
    assert bleu_tokens(text) == Tokenizer13a()(text.rstrip()).split()
    assert bleu_tokens("我爱北京 Python!", "zh") == TokenizerZh()("我爱北京 Python!").split()
    assert bleu_tokens("我爱北京", "zh") == ["我", "爱", "北", "京"]
    assert bleu_tokens("ありがとう", "char") == list("ありがとう")


def test_lang_implies_tokenizer_and_tokenize_overrides():
    assert resolve_tokenize("en") == "13a"
    assert resolve_tokenize("zh") == "zh"
    assert resolve_tokenize("en", "char") == "char"
    assert resolve_tokenize("zh", "intl") == "intl"


def test_unknown_names_list_the_choices():
    with pytest.raises(SeqlabError, match="unknown tokenizer 'bogus'; choose one of: " + ", ".join(TOKENIZERS)):
        resolve_tokenize("en", "bogus")
    with pytest.raises(SeqlabError, match="unknown language 'fr'; choose one of: en, zh"):
        resolve_tokenize("fr")


@pytest.mark.skipif(importlib.util.find_spec("MeCab") is not None, reason="MeCab is installed")
def test_missing_optional_dependency_says_how_to_install():
    with pytest.raises(SeqlabError, match=r"needs extra dependencies: pip install sacrebleu\[ja\]"):
        resolve_tokenize("en", "ja-mecab")
