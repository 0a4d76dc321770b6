"""Banned words: words and phrases, given as text, that a reply never contains, whatever the tokenizer.

    ban = compile_ban_list(["damn", "该死"], tokenizer, eos_ids=[tokenizer.eos_id])
    processor = BannedWords(ban, prompt_length=P, max_new_tokens=50)   # a logits processor
    generate(model, ids, tokenizer=tokenizer, banned_words=["damn"])     # the same, through the options

Unlike Hugging Face's `bad_words_ids` (one token sequence per entry, only its last token banned), an
entry bans every token sequence that spells it under the run's tokenizer, and each token where it would
complete the entry: `" damn"`, `"Damn"`, `"da" "mn"`, `"DAMN!"` and a byte-level BPE token holding half of
`该` all count.

Text. Entries and token texts are compared after NFKC, case folding and UTF-8 encoding; whitespace
bytes count as spaces. A byte-level BPE token that is not valid UTF-8 by itself (part of a character)
keeps its raw bytes (ASCII letters lowered); such a split character is matched in the entry's lower,
upper, title and capitalised spellings. Special tokens spell nothing, except EOS, which ends the text.

Word boundaries. A word byte is [A-Za-z0-9_]; every other byte is a boundary character. An entry that
starts (ends) with a word byte matches only at the start (end) of a word: "ass" bans neither "class"
nor "assistant". Other entries ("该死", "!!") match anywhere. Both sides are written over the
257-symbol alphabet bytes + BND, where BND marks a gap next to a boundary character, the reply's start
and its end:

    sym(x)   = x's bytes with BND on both sides of every non-word byte, never two BNDs in a row
    sym("go to.")       = g o BND ' ' BND t o BND '.' BND
    pattern(e)          = BND sym(e) BND, the BNDs merged with sym(e)'s own
    text of a reply     = BND sym(t_1) sym(t_2) ... sym(t_n) BND     (BND BND merged; EOS = BND)

so an entry occurs in a reply (as a word where it starts or ends with a word byte) iff its pattern is
a substring of the reply's symbols. A token's symbols do not depend on its neighbours, except that a
leading BND merges with a BND just before.

Automaton. Aho-Corasick (1975) over the patterns: a node is a prefix of a pattern, `fail(u)` its
longest proper suffix that is a node, and the state after a text is its longest suffix that is a node
(so it depends on the last M symbols only, M = the longest pattern). A row's state is computed from its
generated tokens (the reply, started at the initial BND), from the last M tokens at most.

Banned next tokens in state s (memoised per state): token t is banned iff feeding sym(t) from s
completes a pattern. A completed pattern either lies inside sym(t) (a static set, found once), or
starts in the history: then it is path(u) + c for a node u != root on s's failure chain and c a prefix
of sym(t) — every token whose symbols start with c, a contiguous range of the tokens sorted by symbols.
EOS is a token whose symbols are BND. A reply also ends when it reaches `max_new_tokens`: at the last
step, t is banned too when sym(t) BND completes a pattern (c = sym(t) BND). The word tokenizer never
puts two word characters of adjacent tokens together (its words are maximal runs), so there a token
ends a word: that last-step rule holds at every step (" damn" itself is banned, not what follows it).

Limits. Under char and BPE tokens a reply that has spelt "damn" may only go on with a word byte, so a
model bent on the word writes a longer one ("damned", or a made-up "damnn"): the guarantee is that the
entry never appears as a word. Token texts are normalised one by one (NFKC of a whole reply may differ
where a combining mark starts a token), and a phrase matches with single spaces ("go  to" is not "go to").
"""

from __future__ import annotations

import codecs
import itertools
import os
import stat
import unicodedata
import weakref
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqlab.decode.processors import NEG_INF
from seqlab.errors import SeqlabError
from seqlab.io import decode_utf8, file_kind

WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
SPACE_BYTES = frozenset(b" \t\n\r\x0b\x0c")
BND = chr(256)  # the boundary symbol; a byte b is the symbol chr(b)
_TOP = chr(257)  # above every symbol: the symbol strings that start with c lie in [c, c + _TOP)
ROOT = 0


def normalize(text: str) -> str:
    """What banned words are compared as: NFKC, then case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


def symbols(data: bytes) -> str:
    """Bytes -> symbols (one character each, BND = chr(256)): BND on both sides of every non-word byte,
    never two in a row; whitespace bytes become a space."""
    out: list[str] = []
    for b in data:
        if b in WORD_BYTES:
            out.append(chr(b))
            continue
        if not out or out[-1] != BND:
            out.append(BND)
        out.append(" " if b in SPACE_BYTES else chr(b))
        out.append(BND)
    return "".join(out)


def entry_patterns(entry: str) -> set[str]:
    """The patterns of one entry: its normalised form and, for characters a BPE token splits, its plain
    spellings; each with BND at both ends. A SeqlabError when nothing is left after normalising."""
    text = unicodedata.normalize("NFKC", entry).strip()
    if not normalize(text):
        raise SeqlabError(f"banned word {entry!r} is empty after Unicode normalisation; remove it from the list")
    spellings = {normalize(text), text, text.lower(), text.upper(), text.title(), text.capitalize()}
    patterns = set()
    for spelling in spellings:
        s = symbols(spelling.encode("utf-8").lower())
        patterns.add((s if s.startswith(BND) else BND + s) + ("" if s.endswith(BND) else BND))
    return patterns


def token_bytes(tokenizer: Any) -> list[bytes]:
    """Each token id's text, normalised to bytes (b"" for special tokens, `<unk>` spelt as decoding shows it)."""
    n = tokenizer.vocab_size
    if getattr(tokenizer, "kind", None) == "bpe":
        raw = _byte_level_tokens(tokenizer)
    else:
        raw = [tokenizer.decode([i]).encode("utf-8") for i in range(n)]
    return [_normalize_bytes(data) for data in raw]


def _byte_level_tokens(tokenizer: Any) -> list[bytes]:
    """A byte-level BPE vocabulary's raw bytes (GPT-2's byte <-> printable character table, inverted);
    decoding one token at a time would turn a split character into U+FFFD."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    byte_of = {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(shifted)}
    specials = {tokenizer.token_to_id(s) for s in tokenizer.specials} - {tokenizer.unk_id}
    out = []
    for i in range(tokenizer.vocab_size):
        tok = tokenizer.id_to_token(i)
        if i in specials:
            out.append(b"")
        elif all(c in byte_of for c in tok):
            out.append(bytes(byte_of[c] for c in tok))
        else:  # an added token that is not byte-level encoded (`<unk>`)
            out.append(tok.encode("utf-8"))
    return out


def _normalize_bytes(data: bytes) -> bytes:
    try:
        return normalize(data.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:  # part of a character: only ASCII letters can be folded
        return data.lower()


class BanList:
    """A ban list compiled under one tokenizer: the automaton, each token's symbols, and the banned next
    tokens per automaton state (memoised, so a ban list reused across calls gets faster)."""

    def __init__(self, entries: Sequence[str], token_texts: Sequence[bytes], end_ids: Iterable[int] = (),
                 closed_words: bool = False):
        if not entries:
            raise SeqlabError("the ban list is empty; give at least one word or phrase")
        self.entries = list(entries)
        self.patterns = sorted(set().union(*(entry_patterns(e) for e in entries)))
        self.window = max(len(p) for p in self.patterns)  # M: the state depends on the last M symbols only
        self.closed_words = closed_words
        self.vocab_size = len(token_texts)
        ends = set(end_ids)
        self.token_symbols = [BND if i in ends else symbols(data) for i, data in enumerate(token_texts)]
        self.empty_ids = frozenset(i for i, s in enumerate(self.token_symbols) if not s)
        self._build_automaton()
        self.start = self.feed(ROOT, BND)
        # the tokens sorted by their symbols, as fed after a state that does (True) or does not end in BND
        self._views = {ends_bnd: _SortedTokens(self.token_symbols, strip=ends_bnd) for ends_bnd in (False, True)}
        self.static = tuple(i for i, s in enumerate(self.token_symbols) if self._completes(ROOT, s))
        self.static_end = tuple(i for i, s in enumerate(self.token_symbols)
                                if self._completes(ROOT, s if s.endswith(BND) else s + BND))
        self._banned: dict[tuple[int, bool], tuple[list[Tensor], int]] = {}

    def _build_automaton(self) -> None:
        self.children: list[dict[str, int]] = [{}]
        self.path, self.label, self.is_end = [""], [""], [False]
        for p in self.patterns:
            u = ROOT
            for ch in p:
                if ch not in self.children[u]:
                    self.children[u][ch] = len(self.children)
                    self.children.append({})
                    self.path.append(self.path[u] + ch)
                    self.label.append(ch)
                    self.is_end.append(False)
                u = self.children[u][ch]
            self.is_end[u] = True
        self.fail = [ROOT] * len(self.children)
        self.hit = list(self.is_end)  # a pattern ends here, or at a suffix: hit(u) = end(u) or hit(fail(u))
        queue = deque(self.children[ROOT].values())
        while queue:  # breadth first, so fail(u) is done before u's children
            u = queue.popleft()
            for ch, v in self.children[u].items():
                self.fail[v] = self.goto(self.fail[u], ch) if u != ROOT else ROOT
                self.hit[v] = self.hit[v] or self.hit[self.fail[v]]
                queue.append(v)

    def goto(self, state: int, ch: str) -> int:
        while ch not in self.children[state]:
            if state == ROOT:
                return ROOT
            state = self.fail[state]
        return self.children[state][ch]

    def feed(self, state: int, syms: str) -> int:
        """The state after `syms`, a leading BND merged with one that ends the state."""
        if syms[:1] == BND and self.label[state] == BND:
            syms = syms[1:]
        for ch in syms:
            state = self.goto(state, ch)
        return state

    def _completes(self, state: int, syms: str) -> bool:
        """Whether feeding `syms` from `state` completes a pattern."""
        if syms[:1] == BND and self.label[state] == BND:
            syms = syms[1:]
        for ch in syms:
            state = self.goto(state, ch)
            if self.hit[state]:
                return True
        return False

    def advance(self, state: int, token: int) -> int:
        return self.feed(state, self.token_symbols[token]) if token < self.vocab_size else state

    def state_of(self, tokens: Iterable[int], from_start: bool) -> int:
        """The state after `tokens`: the whole reply (`from_start`), or its last `window` tokens at least."""
        state = self.start if from_start else ROOT
        for t in tokens:
            state = self.advance(state, t)
        return state

    def banned(self, state: int, at_end: bool) -> tuple[list[Tensor], int]:
        """The token ids that complete a pattern begun before them, from `state` (`at_end`: also those after
        which the text ends, a BND following), as disjoint slices of one sorted id tensor (views, so that
        the many states banning half the vocabulary share its memory), and how many there are."""
        key = (state, at_end)
        if key not in self._banned:
            view = self._views[self.label[state] == BND]
            ranges = []
            u = state
            while u != ROOT:  # u: each suffix of the state's text that begins a pattern
                path = self.path[u]
                lo = bisect_left(self.patterns, path)
                for p in itertools.islice(self.patterns, lo, bisect_left(self.patterns, path + _TOP, lo)):
                    rest = p[len(path):]  # c: what the next token must start with to complete p
                    if rest:
                        ranges.append(view.starting_with(rest))
                        if at_end and rest[-1] == BND:
                            ranges.append(view.equal_to(rest[:-1]))
                u = self.fail[u]
            merged = _merge(ranges)
            self._banned[key] = [view.order[a:b] for a, b in merged], sum(b - a for a, b in merged)
        return self._banned[key]


class _SortedTokens:
    """Token ids sorted by their symbols (`strip`: a leading BND removed, as fed after a BND): the tokens
    whose symbols start with, or equal, a string are a range [a, b) of `order`."""

    def __init__(self, token_symbols: Sequence[str], strip: bool):
        syms = [s[1:] if strip and s[:1] == BND else s for s in token_symbols]
        order = sorted(range(len(syms)), key=syms.__getitem__)
        self.keys = [syms[i] for i in order]
        self.order = torch.tensor(order, dtype=torch.long)  # (V,)

    def starting_with(self, prefix: str) -> tuple[int, int]:
        lo = bisect_left(self.keys, prefix)
        return lo, bisect_left(self.keys, prefix + _TOP, lo)

    def equal_to(self, syms: str) -> tuple[int, int]:
        lo = bisect_left(self.keys, syms)
        return lo, bisect_right(self.keys, syms, lo)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges [a, b) -> the disjoint, non-empty ranges covering the same positions."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


_COMPILED: weakref.WeakKeyDictionary[Any, dict[tuple, BanList]] = weakref.WeakKeyDictionary()


def compile_ban_list(entries: Sequence[str], tokenizer: Any, eos_ids: Iterable[int] = ()) -> BanList:
    """The ban list of `entries` under `tokenizer` (EOS ids: the tokenizer's and `eos_ids`), compiled once
    per tokenizer object and list: a chat compiles it for its first turn only."""
    if isinstance(entries, str) or not all(isinstance(e, str) for e in entries):
        raise SeqlabError(f"banned_words must be a list of strings, got {entries!r}")
    ends = tuple(sorted({tokenizer.eos_id, *eos_ids}))
    key = (tuple(entries), ends, tokenizer.vocab_size)
    cache = _COMPILED.setdefault(tokenizer, {})
    if key not in cache:
        cache[key] = BanList(entries, token_bytes(tokenizer), ends, closed_words=tokenizer.kind == "word")
    return cache[key]


class BannedWords:
    """Logits processor: -inf on every next token that would complete a banned word in the reply (the tokens
    after the first `prompt_length`); see the module docstring."""

    reads_ids = True

    def __init__(self, ban: BanList, prompt_length: int, max_new_tokens: int):
        self.ban = ban
        self.prompt_length = prompt_length
        self.last_length = prompt_length + max_new_tokens - 1  # the length before the reply's last token
        self._states: dict[tuple[int, ...], int] = {}  # the last call's windows -> automaton states
        self._masks: dict[tuple[bool, torch.device, int], Tensor | None] = {}

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        V = scores.shape[-1]
        at_end = self.ban.closed_words or input_ids.shape[1] == self.last_length
        banned = [self.ban.banned(state, at_end) for state in self._row_states(input_ids)]  # N x (slices, k_i)
        counts = [count for _, count in banned]
        mask = self._static_mask(at_end, scores.device, V)
        out = scores if mask is None else scores.masked_fill(mask, NEG_INF)  # (N, V), a new tensor
        if any(counts):
            cols = torch.cat([ids for slices, _ in banned for ids in slices])  # (sum k_i,) on the host, moved once
            rows = torch.repeat_interleave(torch.arange(len(banned)), torch.tensor(counts))
            if self.ban.vocab_size > V:  # a model with fewer outputs than the tokenizer has tokens
                rows, cols = rows[cols < V], cols[cols < V]
            index = (rows.to(scores.device), cols.to(scores.device))
            value = torch.tensor(NEG_INF, dtype=scores.dtype, device=scores.device)
            out = out.index_put(index, value) if out is scores else out.index_put_(index, value)
        return out

    def _row_states(self, input_ids: Tensor) -> list[int]:
        """Each row's automaton state after its reply, from a window of its last tokens: the window of the
        previous call, plus one token, when that call saw it (rows may have been reordered by beam search)."""
        P, W = self.prompt_length, self.ban.window
        L = input_ids.shape[1]
        n = L - P  # tokens generated
        tails = input_ids[:, max(P, L - W - 1):].tolist()  # (N, <= W + 1)
        previous, now = self._states, {}
        states = []
        for i, tail in enumerate(tails):
            key = self._window(tail, n, input_ids, i)
            state = now.get(key)
            if state is None:
                state = previous.get(key)
            if state is None and n > 0:
                before = previous.get(self._window(tail[:-1], n - 1, input_ids, i, end=L - 1))
                if before is not None:
                    state = self.ban.advance(before, tail[-1])
            if state is None:
                state = self.ban.state_of(key, from_start=len(key) == n)
            now[key] = state
            states.append(state)
        self._states = now
        return states

    def _window(self, tail: list[int], n: int, input_ids: Tensor, row: int, end: int | None = None) -> tuple[int, ...]:
        """The tokens that fix the state after the first `n` reply tokens: their last `window`, which hold
        at least M symbols, or all of them when fewer or when the window holds a token without symbols."""
        W = self.ban.window
        if n <= W:
            return tuple(tail[len(tail) - n:])
        window = tail[-W:]
        if self.ban.empty_ids.isdisjoint(window):
            return tuple(window)
        return tuple(input_ids[row, self.prompt_length:end].tolist())

    def _static_mask(self, at_end: bool, device: torch.device, V: int) -> Tensor | None:
        """(V,) bool: the tokens that hold a banned word by themselves (or with the end after them); None if none."""
        key = (at_end, device, V)
        if key not in self._masks:
            ids = [i for i in (self.ban.static_end if at_end else self.ban.static) if i < V]
            mask = None
            if ids:
                mask = torch.zeros(V, dtype=torch.bool, device=device)
                mask[torch.tensor(ids, device=device)] = True
            self._masks[key] = mask
        return self._masks[key]


def read_word_list(path: str | os.PathLike) -> list[str]:
    """The words and phrases of a ban list file: UTF-8, one a line; blank lines and lines starting with
    `#` are skipped. A missing, unreadable, non-regular, binary or empty file is a one-line SeqlabError."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SeqlabError(f"ban list {path}: no such file") from None
    except OSError as e:
        raise SeqlabError(f"ban list {path} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SeqlabError(f"ban list {path} is a {file_kind(mode)}, not a regular file; "
                          "give a text file with one word or phrase a line")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SeqlabError(f"ban list {path} cannot be read: {e.strerror}") from None
    body = data.removeprefix(codecs.BOM_UTF8)
    nul = data.find(b"\0")
    if nul >= 0:
        raise SeqlabError(f"ban list {path} looks like binary data (a NUL byte at offset {nul}), "
                          "not a text file with one word or phrase a line")
    text = decode_utf8(body, f"ban list {path}", offset=len(data) - len(body))
    entries = [line.strip() for line in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise SeqlabError(f"ban list {path} holds no words (only blank lines or # comments); "
                          "give one word or phrase a line")
    for entry in entries:
        entry_patterns(entry)  # an entry that normalises to nothing fails here, naming it
    return entries
