"""The tokens every text metric counts: sacrebleu's tokenizer output, split on whitespace.

BLEU, self-BLEU, distinct-n and the average length all see the same tokens, so their numbers
describe the same units: `13a` words for English (sacrebleu's default), one token per Chinese
character for `zh`, one per character for `char` (Japanese, Korean, Thai). Case is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from seqlab.errors import SeqlabError

# sacrebleu tokenizers that work offline (spm/flores download a model, so they are left out)
TOKENIZERS = ("13a", "intl", "zh", "char", "none", "ja-mecab", "ko-mecab")
# --lang -> the tokenizer it implies
LANG_TOKENIZE = {"en": "13a", "zh": "zh"}
# tokenizers whose tokens are single characters (CJK) rather than words
CHARACTER_TOKENIZERS = frozenset({"zh", "char", "ja-mecab", "ko-mecab"})


def resolve_tokenize(lang: str = "en", tokenize: str | None = None) -> str:
    """The sacrebleu tokenizer for `lang`, or `tokenize` when given (it overrides the language)."""
    if lang not in LANG_TOKENIZE:
        raise SeqlabError(f"unknown language {lang!r}; choose one of: {', '.join(LANG_TOKENIZE)}")
    name = LANG_TOKENIZE[lang] if tokenize is None else tokenize
    if name not in TOKENIZERS:
        raise SeqlabError(f"unknown tokenizer {name!r}; choose one of: {', '.join(TOKENIZERS)}")
    sacrebleu_tokenizer(name)  # fail early when its optional dependencies are missing
    return name


@functools.cache
def sacrebleu_tokenizer(name: str) -> Callable[[str], str]:
    """sacrebleu's tokenizer object for `name` (maps a line to space-separated tokens)."""
    from sacrebleu.metrics import BLEU

    try:
        return BLEU(tokenize=name).tokenizer
    except (ImportError, RuntimeError) as e:
        hint = next((ln.strip() for ln in str(e).splitlines() if "pip install" in ln), str(e).strip())
        raise SeqlabError(f"the {name!r} tokenizer needs extra dependencies: {hint}") from None


def bleu_tokens(text: str, tokenize: str = "13a") -> list[str]:
    """The tokens BLEU counts in `text` (sacrebleu strips trailing space, tokenizes, splits)."""
    return sacrebleu_tokenizer(tokenize)(text.rstrip()).split()
