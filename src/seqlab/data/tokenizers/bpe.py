"""Byte-level BPE (GPT-2's scheme), trained and run by Hugging Face `tokenizers`.

Text is split by GPT-2's regex, each piece mapped to bytes (shown as printable characters, a space
as `Ġ`), and BPE merges learned over those bytes. All 256 bytes are in the vocabulary, so nothing is
out of vocabulary and, with `add_prefix_space=False`,

    decode(encode(x)) == x     for every x that holds no special-token string.

seqlab's specials `<pad> <unk> <bos> <eos> <sep>` are ids 0..4 when seqlab trains it. A GPT-2
folder from Hugging Face (`from_hf_files`) keeps GPT-2's ids; its only special `<|endoftext|>`
(50256) then plays every role seqlab's specials are absent for.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from seqlab.data.tokenizers.base import SPECIALS
from seqlab.errors import DataError
from seqlab.io import atomic_open, write_json

ROLES = ("pad", "unk", "bos", "eos", "sep")
GPT2_EOS = "<|endoftext|>"
N_BYTES = 256


class BPETokenizer:
    kind = "bpe"

    def __init__(self, hf: HFTokenizer, roles: dict[str, str], specials: list[str]):
        self.hf = hf
        self.roles = dict(roles)
        self.specials = list(specials)
        ids = [hf.token_to_id(self.roles[role]) for role in ROLES]
        for role, tid in zip(ROLES, ids, strict=True):
            if tid is None:
                raise DataError(f"bpe tokenizer: special token {self.roles[role]!r} ({role}) is not in the vocabulary")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.sep_id = ids
        self._skip = {hf.token_to_id(s) for s in self.specials} - {self.unk_id}
        self._skip |= {self.pad_id, self.bos_id, self.eos_id, self.sep_id}

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = self.hf.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise DataError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        if skip_special:
            ids = [i for i in ids if i not in self._skip]
        return self.hf.decode(ids, skip_special_tokens=False)

    def token_to_id(self, tok: str) -> int | None:
        return self.hf.token_to_id(tok)

    def id_to_token(self, i: int) -> str:
        tok = self.hf.id_to_token(int(i))
        if tok is None:
            raise DataError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return tok

    def add_special_tokens(self, tokens: list[str]) -> None:
        self.hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])
        for t in tokens:
            if t not in self.specials:
                self.specials.append(t)
            self._skip.add(self.hf.token_to_id(t))

    def count_oov(self, text: str) -> tuple[int, int]:
        return 0, len(self.encode(text))  # every byte is in the vocabulary

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": 1, "roles": self.roles, "specials": self.specials,
                "hf": json.loads(self.hf.to_str())}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), indent=None)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> BPETokenizer:
        return cls(HFTokenizer.from_str(json.dumps(state["hf"])), state["roles"], state["specials"])

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 4000, min_freq: int = 1) -> BPETokenizer:
        smallest = N_BYTES + len(SPECIALS)
        if vocab_size < smallest:
            raise DataError(f"bpe vocab_size must be >= {smallest} (256 bytes + {len(SPECIALS)} specials), got {vocab_size}")
        hf = _byte_level(HFTokenizer(models.BPE()))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, show_progress=False,
            special_tokens=[AddedToken(s, special=True, normalized=False) for s in SPECIALS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(texts, trainer)
        return cls(hf, dict(zip(ROLES, SPECIALS, strict=True)), list(SPECIALS))

    @classmethod
    def from_hf_files(cls, folder: str | Path) -> BPETokenizer:
        """A Hugging Face GPT-2-style folder: `tokenizer.json`, or `vocab.json` + `merges.txt`; ids are kept."""
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            hf = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            hf = _byte_level(HFTokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))))
        else:
            raise DataError(f"{folder}: no tokenizer.json, nor vocab.json + merges.txt, to read a BPE tokenizer from")
        vocab = hf.get_vocab(with_added_tokens=True)
        roles = {}
        for role, ours in zip(ROLES, SPECIALS, strict=True):
            if ours in vocab:
                roles[role] = ours
            elif GPT2_EOS in vocab:
                roles[role] = GPT2_EOS
            else:
                raise DataError(f"{folder}: the vocabulary has neither {ours!r} nor {GPT2_EOS!r} for the {role} token")
        specials = list(dict.fromkeys(roles.values()))
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        return cls(hf, roles, specials)

    def save_hf_files(self, folder: str | Path) -> None:
        """Write `tokenizer.json`, `vocab.json`, `merges.txt` and the tokenizer config transformers reads."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(folder / "tokenizer.json") as f:
            f.write(self.hf.to_str(pretty=True))
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            for written in self.hf.model.save(tmp):
                os.replace(written, folder / Path(written).name)
        special_map = {f"{role}_token": self.roles[role] for role in ("bos", "eos", "unk", "pad")}
        write_json(folder / "special_tokens_map.json", special_map)
        write_json(folder / "tokenizer_config.json", {
            "tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, **special_map,
            "additional_special_tokens": [t for t in self.specials if t not in special_map.values()]})

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def _byte_level(hf: HFTokenizer) -> HFTokenizer:
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    return hf
