import errno
import io
import os
import stat
import sys
import tempfile

import pytest

from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, atomic_path, read_stdin, stdin_lines, write_json, write_text


def test_atomic_write_replaces_and_keeps_normal_permissions(tmp_path):
    p = tmp_path / "x.json"
    write_json(p, {"a": 1})
    assert p.read_text().strip().startswith("{")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert mode & 0o044, oct(mode)  # group/other can read, as with open()


def test_failed_write_leaves_old_content_and_no_temp(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(p) as f:
        f.write("new")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "y.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["x.txt"]


# ---------------------------------------------------------------------------- refusing non-regular targets

def _special_targets(tmp_path):
    """name -> a path that exists and is not a regular file (a character device only where we may make one)."""
    targets = {"fifo": tmp_path / "fifo", "directory": tmp_path / "dir", "symlink": tmp_path / "link"}
    os.mkfifo(targets["fifo"])
    targets["directory"].mkdir()
    (tmp_path / "precious.txt").write_text("precious")
    targets["symlink"].symlink_to(tmp_path / "precious.txt")
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
        targets["device"] = tmp_path / "null"
    return targets


@pytest.mark.parametrize("writer", ["atomic_open", "atomic_path"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_as_it_is(tmp_path, writer):
    for kind, target in _special_targets(tmp_path).items():
        before = os.lstat(target)
        with pytest.raises(SeqlabError, match="not a regular file") as e:
            if writer == "atomic_open":
                write_text(target, "new")
            else:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(b"new")
        assert str(target) in str(e.value), kind
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev), kind
    assert (tmp_path / "precious.txt").read_text() == "precious"  # the symlink's file was not written through
    assert os.readlink(tmp_path / "link") == str(tmp_path / "precious.txt")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or ".tmp." in p]


def test_a_target_that_turns_into_a_fifo_while_being_written_is_not_replaced(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(SeqlabError, match="named pipe"), atomic_open(target) as f:
        f.write("new")
        os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_regular_file_is_replaced_as_before(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text(target, "new")
    assert target.read_text() == "new"


# ---------------------------------------------------------------------------- disk and path errors name the target

def test_a_parent_that_is_a_regular_file_is_named(tmp_path):
    (tmp_path / "notes").write_text("x")
    for target in (tmp_path / "notes" / "out.json", tmp_path / "notes" / "deeper" / "out.json"):
        with pytest.raises(SeqlabError) as e:
            write_json(target, {})
        assert str(e.value).startswith(f"cannot write {target}: its parent {tmp_path / 'notes'} is a file")


def test_disk_full_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    """Writes really go to /dev/full (the kernel answers ENOSPC) instead of the temporary file."""
    real_fdopen = os.fdopen

    def to_dev_full(fd, mode, encoding=None):
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode, encoding=encoding)

    monkeypatch.setattr(os, "fdopen", to_dev_full)
    target = tmp_path / "config.yaml"
    with pytest.raises(SeqlabError) as e:
        write_text(target, "x" * 100_000)
    assert str(e.value) == f"no space left on device writing {target}; free some space or write somewhere else"
    assert os.listdir(tmp_path) == []


def test_disk_full_inside_a_filename_writer_names_the_target(tmp_path):
    """matplotlib writes the temporary by name (its OSError names it); safetensors, in Rust, says "(os error 28)"."""
    target = tmp_path / "model.safetensors"
    with pytest.raises(SeqlabError, match=f"^no space left on device writing {target};"), atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    with pytest.raises(SeqlabError, match=f"^disk quota exceeded writing {target};"), atomic_path(target):
        raise RuntimeError('Error while serializing: I/O error: Disk quota exceeded (os error 122) at path "x"')
    with pytest.raises(RuntimeError, match="os error 2"), atomic_path(target):  # not the user's disk: as it was
        raise RuntimeError("I/O error: No such file or directory (os error 2)")
    assert os.listdir(tmp_path) == []


def test_permission_denied_names_the_target(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:  # root may write anyway: make the temporary's creation fail as it would for a user
        def denied(*args, dir=None, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, ".out.json.abc.tmp"))

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    target = folder / "out.json"
    with pytest.raises(SeqlabError) as e:
        write_json(target, {})
    assert str(e.value).startswith(f"permission denied: {target};")


def test_a_name_too_long_is_named_and_a_long_valid_name_works(tmp_path):
    with pytest.raises(SeqlabError, match="^file name too long: "):
        write_text(tmp_path / ("a" * 300), "x")
    long_ok = tmp_path / ("b" * 250 + ".png")  # its temporary's name used to pass the 255-byte limit
    with atomic_path(long_ok) as tmp:
        tmp.write_bytes(b"png")
    assert long_ok.read_bytes() == b"png"


def test_another_files_os_error_in_the_body_passes_through(tmp_path):
    other = "/elsewhere/input.txt"
    with pytest.raises(PermissionError) as e, atomic_open(tmp_path / "out.txt"):
        raise PermissionError(errno.EACCES, "Permission denied", other)
    assert e.value.filename == other
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "out.txt"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")


# ---------------------------------------------------------------------------- strict UTF-8 stdin

def test_stdin_that_is_not_utf8_names_stdin_and_the_byte_offset(monkeypatch):
    for errors in ("strict", "surrogateescape"):  # whatever the locale made of Python's own stdin
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xc3\xa9\nok\n\xff\xfe x\n"), "utf-8", errors))
        with pytest.raises(SeqlabError, match=r"^stdin is not valid UTF-8 \(byte 0xff at offset 9\)"):
            read_stdin()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xc3\xa9\nok\n\xff\xfe x\n"), "utf-8", errors))
        lines = stdin_lines()
        assert [next(lines), next(lines)] == ["café\n", "ok\n"]  # line by line: the good ones come first
        with pytest.raises(SeqlabError, match=r"byte 0xff at offset 9\)"):
            next(lines)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\nb\n"))  # already text (the in-process CLI runner)
    assert read_stdin() == "a\nb\n"
