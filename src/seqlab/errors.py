"""User-facing errors: the CLI prints them as one line on stderr and exits with code 2."""

from __future__ import annotations

import errno
import re


class SeqlabError(Exception):
    """Bad input from the user (a path, a file's contents, a config, an option).

    The message must say what is wrong and, where possible, how to fix it.
    """


class ConfigError(SeqlabError):
    """An unknown config key, a wrong type or an invalid value."""


class DataError(SeqlabError):
    """A corpus that cannot be read or used."""


# OS errors that are about the user's disk or paths, not a bug in seqlab: errno -> (what happened, what to do)
_USER_OS_ERRORS = {
    errno.ENOSPC: ("no space left on device writing {path}", "free some space or write somewhere else"),
    errno.EDQUOT: ("disk quota exceeded writing {path}", "free some space or write somewhere else"),
    errno.EACCES: ("permission denied: {path}", "choose a path you may write to, or change its permissions"),
    errno.EPERM: ("permission denied: {path}", "choose a path you may write to, or change its permissions"),
    errno.EROFS: ("read-only file system: {path}", "write somewhere else"),
    errno.ENOTDIR: ("{path}: a parent is not a directory", "choose another path"),
    errno.EEXIST: ("{path} already exists", "choose another path, or remove it first"),
    errno.ENAMETOOLONG: ("file name too long: {path}", "use a shorter name (at most 255 bytes per path component)"),
}

def os_error_message(code: int | None, path: object) -> str | None:
    """The one-line message for an OS error with an errno of `_USER_OS_ERRORS`, naming `path`; None for any other
    errno (it may be seqlab's bug)."""
    if code not in _USER_OS_ERRORS:
        return None
    what, todo = _USER_OS_ERRORS[code]
    return f"{what.format(path=path if path is not None else 'a file')}; {todo}"


def one_line(message: str, max_value: int = 200, max_total: int = 1000) -> str:
    """`message` as one short line, however long or multi-line the values quoted in it are.

    Control characters (newlines first) become escapes (`\\n`, `\\x1b`). A quoted value ('...' or "...",
    as `!r` writes it) longer than `max_value`, and an unquoted run of more than `max_value` non-space
    characters, keep their head and their last 40 characters (a file name, a closing bracket) around
    "…[N characters cut]…". A line still over `max_total` (a long unquoted value with spaces) keeps its
    first two thirds and its last third, where the hint of what to do usually is.
    """
    line = _CONTROL.sub(_escape_control, message.strip())
    line = "".join(_cut_quoted(part, max_value) if quoted else _cut_runs(part, max_value)
                   for part, quoted in _split_quoted(line))
    if len(line) > max_total:
        line = _cut_middle(line, max_total * 2 // 3, max_total // 3)
    return line


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # all that str.splitlines() splits on


def _escape_control(m: re.Match) -> str:
    char = m.group(0)
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _split_quoted(line: str) -> list[tuple[str, bool]]:
    """`line` as (text, is_quoted) parts, in one pass (a quote with no closing one leaves the rest unquoted).

    A quote opens after a non-word character (not the apostrophe of "don't") and closes before one,
    skipping backslash escapes, as `repr` writes them.
    """
    parts, done, i, unclosed = [], 0, 0, set()
    while i < len(line):
        q = line[i]
        if q not in "'\"" or q in unclosed or (i > 0 and (line[i - 1].isalnum() or line[i - 1] == "_")):
            i += 1
            continue
        j = i + 1
        while (j := line.find(q, j)) != -1 and (_escaped(line, j) or (j + 1 < len(line) and line[j + 1].isalnum())):
            j += 1
        if j == -1:
            unclosed.add(q)  # no later quote of this kind closes either
            i += 1
            continue
        parts += [(line[done:i], False), (line[i:j + 1], True)]
        done = i = j + 1
    parts.append((line[done:], False))
    return parts


def _escaped(line: str, j: int) -> bool:
    k = j
    while k > 0 and line[k - 1] == "\\":
        k -= 1
    return (j - k) % 2 == 1


def _cut_quoted(quoted: str, keep: int) -> str:
    return quoted[0] + _cut_middle(quoted[1:-1], keep - 40, 40) + quoted[-1]


def _cut_runs(text: str, max_run: int) -> str:
    return re.sub(rf"\S{{{max_run + 1},}}", lambda m: _cut_middle(m.group(0), max_run - 40, 40), text)


def _cut_middle(text: str, head: int, tail: int) -> str:
    if len(text) <= head + tail + 1:
        return text
    return f"{text[:head]}…[{len(text) - head - tail:,} characters cut]…{text[-tail:]}"
