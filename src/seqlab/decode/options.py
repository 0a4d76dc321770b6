"""Decoding options, with Hugging Face's names, meanings and defaults, checked once up front.

Every bad value is a `SeqlabError` with a one-line message naming the option, so the CLI (and the
chat and server) report it as a user error. Defaults are HF `GenerationConfig`'s: greedy unless
`do_sample`, `top_k=50` when sampling, `max_new_tokens=20`; `seqlab generate` overrides them all
from the run's `decode` config section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from seqlab.errors import SeqlabError

EARLY_STOPPING = (True, False, "never")


@dataclass
class GenerationOptions:
    max_new_tokens: int = 20
    min_new_tokens: int = 0
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int = 50  # sampling only; 0 = off
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    bad_words_ids: list[list[int]] | None = None
    suppress_tokens: list[int] | None = None
    forced_eos_token_id: int | list[int] | None = None
    stop_strings: str | list[str] | None = None
    banned_words: list[str] | None = None  # text, compiled under the tokenizer (seqlab.decode.banned_words)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.stop_strings is not None and len(self.stop_strings) == 0:
            self.stop_strings = None
        if self.banned_words is not None and len(self.banned_words) == 0:
            self.banned_words = None
        for name in ("max_new_tokens", "num_beams", "num_return_sequences"):
            _integer(self, name, minimum=1)
        for name in ("min_new_tokens", "top_k", "no_repeat_ngram_size"):
            _integer(self, name, minimum=0)
        if self.do_sample and not self.temperature > 0:
            raise SeqlabError(f"temperature must be > 0 when sampling, got {self.temperature} (use greedy decoding instead)")
        if not 0.0 < self.top_p <= 1.0:
            raise SeqlabError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise SeqlabError(f"min_p must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            raise SeqlabError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not isinstance(self.early_stopping, (bool, str)) or self.early_stopping not in EARLY_STOPPING:
            raise SeqlabError(f"early_stopping must be true, false or 'never', got {self.early_stopping!r}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise SeqlabError(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                              f"({self.num_beams}) in beam search")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise SeqlabError("greedy search returns one sequence per input; num_return_sequences > 1 needs "
                              "do_sample or num_beams > 1")
        if self.bad_words_ids is not None and (not self.bad_words_ids or any(
                not seq or any(not isinstance(t, int) or t < 0 for t in seq) for seq in self.bad_words_ids)):
            raise SeqlabError(f"bad_words_ids must be a non-empty list of non-empty token id lists, got {self.bad_words_ids}")
        if self.suppress_tokens is not None and any(
                isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.suppress_tokens):
            raise SeqlabError(f"suppress_tokens must be token ids >= 0, got {self.suppress_tokens}")
        if self.stop_strings is not None and not all(self.stop_list):
            raise SeqlabError("stop strings must be non-empty")

    @property
    def eos_ids(self) -> list[int]:
        return _id_list(self.eos_token_id)

    @property
    def stop_list(self) -> list[str]:
        return [self.stop_strings] if isinstance(self.stop_strings, str) else list(self.stop_strings or [])

    @property
    def fill_id(self) -> int | None:
        """The id written after a finished sequence: pad_token_id, else the first EOS (HF's fallback)."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_ids[0] if self.eos_ids else None

    @classmethod
    def from_config(cls, decode_config: Any, tokenizer: Any = None, **overrides: Any) -> GenerationOptions:
        """Options from a `seqlab.config.DecodeConfig` (its fields share these names), then the run's
        `tokenizer` ids (`run_token_options`, when given), then `overrides`. A field left unset (None: a
        seq2seq config's max_new_tokens) keeps the default here; `seqlab.decode.reply_length` gives a run's."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in dataclasses.asdict(decode_config).items() if k in names and v is not None}
        if tokenizer is not None:
            values.update(run_token_options(tokenizer, getattr(decode_config, "suppress_unk", True)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def run_token_options(tokenizer: Any, suppress_unk: bool = True) -> dict[str, Any]:
    """The options a run's tokenizer fixes: its EOS and padding ids and, unless told otherwise, a ban on
    generating `<unk>` (a reply that says "<unk>" is never what a user wants; OpenNMT's `ban_unk_token`)."""
    options: dict[str, Any] = {"eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    unk = getattr(tokenizer, "unk_id", None)
    if suppress_unk and unk is not None and unk not in (tokenizer.eos_id, tokenizer.pad_id):
        options["suppress_tokens"] = [unk]
    return options


def _integer(opts: GenerationOptions, name: str, minimum: int) -> None:
    value = getattr(opts, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SeqlabError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _id_list(ids: int | list[int] | None) -> list[int]:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]
