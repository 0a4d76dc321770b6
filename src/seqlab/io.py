"""Atomic writes: a file is either its old content or its complete new content, never half of one.

Every checkpoint, config, tokenizer and output goes through these (temporary file in the same
directory, flush + fsync, then `os.replace`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from seqlab.errors import SeqlabError, os_error_message


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide outputs from others


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it over `path` only on success.

    `path` must be a regular file or not exist yet; a full disk, a denied permission and the like are
    a `SeqlabError` naming `path` (see `_user_errors`).
    """
    target = Path(path)
    with _user_errors(target):
        fd, tmp = _temp_sibling(target, ".tmp")
        try:
            with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            _rename_into_place(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a temporary path for writers that want a filename (safetensors, matplotlib); renamed on success."""

    @contextlib.contextmanager
    def _cm() -> Iterator[Path]:
        target = Path(path)
        with _user_errors(target):
            fd, tmp = _temp_sibling(target, ".tmp" + target.suffix[:16])
            os.close(fd)
            try:
                yield Path(tmp)
                _rename_into_place(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    return _cm()


def _temp_sibling(target: Path, suffix: str) -> tuple[int, str]:
    """Check `target`, make its directory, and open a new temporary file next to it."""
    _refuse_special(target)
    _make_parent(target)
    # the name is cut so that a target name near the 255-byte limit still leaves room for the temporary's
    return tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=suffix, dir=target.parent)


def _rename_into_place(tmp: str, target: Path) -> None:
    os.chmod(tmp, _FILE_MODE)
    _refuse_special(target)  # again: something may have appeared there while the content was written
    os.replace(tmp, target)


_KINDS = [(stat.S_ISREG, "regular file"), (stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"),
          (stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket")]


def file_kind(mode: int) -> str:
    """What kind of file an `st_mode` describes, as an error message names it: "named pipe (FIFO)"..."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _refuse_special(target: Path) -> None:
    """Refuse to rename over anything but a regular file: a device, a FIFO, a directory, a socket, a symlink.

    `os.replace` would put the new file in its place (as root, `--out /dev/full` would turn the
    device into a PNG) or, for a symlink, replace the link rather than write where it points.
    """
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # new file; a parent that is a file is _make_parent's to report
        return
    if stat.S_ISREG(mode):
        return
    kind = file_kind(mode)
    if stat.S_ISLNK(mode):
        kind += f" (to {os.readlink(target)})"
    raise SeqlabError(f"{target} exists and is a {kind}, not a regular file; seqlab only replaces regular files: "
                      "choose another output path")


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in reversed(target.parents) if p.exists() and not p.is_dir()), target.parent)
        raise SeqlabError(f"cannot write {target}: its parent {blocker} is a file, not a directory; "
                          "choose another path") from None


@contextlib.contextmanager
def _user_errors(target: Path) -> Iterator[None]:
    """Turn an OS error about `target`'s disk or directory (no space, no permission...) into a SeqlabError naming it.

    Only errors of the write itself: those without a file name (a `write` on the open file), or about
    `target` or a file in its directory (our temporary); any other file's error passes through. Rust
    writers (safetensors) report the OS error in their message as "(os error N)".
    """
    try:
        yield
    except OSError as e:
        if not _about(e.filename, target) or (message := os_error_message(e.errno, target)) is None:
            raise
        raise SeqlabError(message) from e
    except SeqlabError:
        raise
    except Exception as e:
        match = re.search(r"\(os error (\d+)\)", str(e))
        if match is None or (message := os_error_message(int(match.group(1)), target)) is None:
            raise
        raise SeqlabError(message) from e


def _about(filename: object, target: Path) -> bool:
    if filename is None:
        return True
    name = Path(os.fsdecode(filename)) if isinstance(filename, str | bytes | os.PathLike) else None
    return name is not None and (name == target or name.parent == target.parent
                                 or name in target.parents)  # mkdir of a missing parent


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_stdin() -> str:
    """All of stdin, decoded as strict UTF-8 whatever the locale (a bad byte is a SeqlabError with its offset).

    Python's own stdin would turn a bad byte into a lone surrogate (surrogateescape, the C/UTF-8 locale
    default) or fail with no offset; seqlab's text inputs are UTF-8, as its files are.
    """
    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:  # already text (a test's StringIO)
        return sys.stdin.read()
    return decode_utf8(binary.read(), "stdin")


def stdin_lines() -> Iterator[str]:
    """Stdin's lines as they arrive (a piped conversation), each decoded as strict UTF-8 like `read_stdin`."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:
        yield from sys.stdin
        return
    offset = 0
    for line in binary:
        yield decode_utf8(line, "stdin", offset)
        offset += len(line)


def decode_utf8(data: bytes, name: str, offset: int = 0) -> str:
    """`data` as strict UTF-8; a bad byte is a one-line SeqlabError naming `name` (the input `data` was read
    from, at `offset` in it) and the byte's offset in that input."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SeqlabError(f"{name} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {offset + e.start}); "
                          "convert it first, e.g. with iconv -t UTF-8") from None


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256, hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
