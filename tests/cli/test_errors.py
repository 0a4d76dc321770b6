"""The CLI's one-line errors for what lies outside seqlab: special files as --out, full disks, denied or
impossible paths, huge or multi-line values in a message, lone surrogates in --json, non-UTF-8 stdin."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error
from tiny_runs import (
    LM,
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    write_pairs_corpus,
    write_text_corpus,
)

from seqlab.cli.options import print_json
from seqlab.errors import one_line


@pytest.fixture
def logged_run(tmp_path) -> Path:
    """What `seqlab plot` needs: a run directory with a config and a few logged losses."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "train_loss": 2.0}\n{"step": 2, "train_loss": 1.5, "val_loss": 1.7}\n')
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An untrained LM run and an untrained seq2seq run (well under a second each)."""
    root = tmp_path_factory.mktemp("runs")
    lm = make_run(root / "lm", config_for(write_text_corpus(root / "lines.txt"), LM, "lm"))
    s2s = make_run(root / "s2s", config_for(write_pairs_corpus(root / "pairs.jsonl"), SEQ2SEQ, "pairs"))
    return {"lm": lm, "s2s": s2s, "corpus": root / "lines.txt"}


def seqlab_bytes(*args: str | bytes, stdin: bytes = b"", stdout=subprocess.PIPE, env: dict | None = None):
    """`python -m seqlab ARGS` with bytes in and out (the conftest runner is text-only)."""
    return subprocess.run([sys.executable, "-m", "seqlab", *args], input=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})})


def one_line_error(result) -> str:
    """The error line of a finished subprocess, after checking the one-line contract."""
    stderr = result.stderr.decode("utf-8")
    assert_one_line_error(subprocess.CompletedProcess(result.args, result.returncode, "", stderr))
    return stderr.strip()


# ---------------------------------------------------------------------------- --out that is not a regular file

def test_plot_refuses_an_out_that_is_a_fifo_a_symlink_or_a_device(cli, logged_run, tmp_path):
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"precious")
    link = tmp_path / "link.png"
    link.symlink_to(precious)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    outs = {"symbolic link": link, "named pipe": fifo, "directory": tmp_path / "folder.png"}
    outs["directory"].mkdir()
    if os.geteuid() == 0:  # a /dev/null of our own: the real one must not be put at risk
        os.mknod(tmp_path / "null.png", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        outs["character device"] = tmp_path / "null.png"
    for kind, out in outs.items():
        before = os.lstat(out)
        result = cli("plot", logged_run, "--out", out)
        assert_one_line_error(result)
        assert f"{out} exists and is a {kind}" in result.stderr
        assert os.lstat(out).st_mode == before.st_mode and os.lstat(out).st_ino == before.st_ino
    assert precious.read_bytes() == b"precious" and os.readlink(link) == str(precious)


def test_attention_refuses_an_out_that_is_a_device_like_dev_full(cli, runs, tmp_path):
    out = tmp_path / "full"  # no suffix: drawn as a PNG, like --out /dev/full
    if os.geteuid() == 0:
        os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    else:
        os.mkfifo(out)
    before = os.lstat(out)
    result = cli("attention", runs["s2s"], "--source", "hello", "--out", out, "--device", "cpu")
    assert_one_line_error(result)
    assert str(out) in result.stderr and "not a regular file" in result.stderr
    assert (os.lstat(out).st_mode, os.lstat(out).st_rdev) == (before.st_mode, before.st_rdev)


# ---------------------------------------------------------------------------- paths and disks

def test_out_under_a_regular_file_names_the_parent(cli, logged_run, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "plots" / "loss.png"
    result = cli("plot", logged_run, "--out", out)
    assert_one_line_error(result)
    assert f"cannot write {out}: its parent {tmp_path / 'notes.txt'} is a file, not a directory" in result.stderr


def test_a_full_disk_names_the_output(cli, logged_run, tmp_path, monkeypatch):
    """matplotlib's write goes to /dev/full, so the kernel itself answers ENOSPC."""
    from matplotlib.figure import Figure

    def savefig_on_a_full_disk(self, fname, **kwargs):
        with open(fname, "wb") as f, open("/dev/full", "wb") as full:
            f.write(b"\x89PNG")
            full.write(b"\0" * 1_000_000)

    monkeypatch.setattr(Figure, "savefig", savefig_on_a_full_disk)
    out = tmp_path / "loss.png"
    result = cli("plot", logged_run, "--out", out)
    assert_one_line_error(result)
    assert f"seqlab: error: no space left on device writing {out}; free some space" in result.stderr
    assert os.listdir(tmp_path) == ["run"]  # no temporary left behind


def test_json_on_a_full_stdout_is_one_line(logged_run, tmp_path):
    with open("/dev/full", "wb") as full:
        result = seqlab_bytes("plot", str(logged_run), "--out", str(tmp_path / "loss.png"), "--json", stdout=full)
    assert one_line_error(result) == ("seqlab: error: no space left on device writing <stdout>; "
                                      "free some space or write somewhere else")


def test_a_directory_without_write_permission_names_the_output(cli, logged_run, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: fail the temporary's creation as the kernel does for a user
        def denied(*args, dir=None, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, ".loss.png.x.tmp.png"))

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    result = cli("plot", logged_run, "--out", locked / "loss.png")
    assert_one_line_error(result)
    assert f"seqlab: error: permission denied: {locked / 'loss.png'}; choose a path" in result.stderr


@pytest.mark.parametrize("error, expected", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/run/metrics.jsonl"),
     "seqlab: error: permission denied: /data/run/metrics.jsonl; "),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"), "seqlab: error: read-only file system: /mnt/ro/x; "),
    (OSError(errno.ENOSPC, "No space left on device"), "seqlab: error: no space left on device writing output"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/file/x"),
     "seqlab: error: /data/file/x: a parent is not a directory; "),
])
def test_os_errors_about_the_users_paths_anywhere_are_one_line_exit_2(cli, logged_run, monkeypatch, error, expected):
    def fail(self):
        raise error

    monkeypatch.setattr("seqlab.runs.MetricsLog.read", fail)
    result = cli("plot", logged_run)
    assert_one_line_error(result)
    assert result.stderr.startswith(expected)


def test_other_os_errors_stay_internal_errors(cli, logged_run, monkeypatch):
    def fail(self):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/gone")

    monkeypatch.setattr("seqlab.runs.MetricsLog.read", fail)
    result = cli("plot", logged_run)
    assert result.exit_code == 1
    assert result.stderr.startswith("seqlab: internal error: FileNotFoundError:")


# ---------------------------------------------------------------------------- huge and multi-line values

def test_a_huge_value_is_cut_in_the_error_line(cli, runs, tmp_path):
    import yaml

    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(config_for(runs["corpus"], LM, "lm")))
    result = cli("train", config, "--out", tmp_path / "r", "--set", "train.lr=" + "7" * 50_000 + "x" * 50_000)
    assert_one_line_error(result)
    assert len(result.stderr) < 400, len(result.stderr)
    assert "train.lr: expected float" in result.stderr
    assert "…[99,800 characters cut]…" in result.stderr and result.stderr.rstrip().endswith("xxx'")
    result = cli("train", config, "--out", tmp_path / "r", "--set", "k" * 100_000 + "=1")
    assert_one_line_error(result)
    assert len(result.stderr) < 400 and "valid keys: data, model, train, decode" in result.stderr  # the hint stays


def test_a_newline_in_a_value_is_escaped(cli, runs, tmp_path):
    import yaml

    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(config_for(runs["corpus"], LM, "lm")))
    result = cli("train", config, "--out", tmp_path / "r", "--set", "tra\nin.x=1")
    assert_one_line_error(result)
    assert "tra\\nin" in result.stderr


def test_one_line_cuts_long_values_and_keeps_the_rest():
    assert one_line("don't use 'x' here; it's fine") == "don't use 'x' here; it's fine"
    quoted = one_line("prompt '" + "ab " * 40_000 + "' is too long; shorten it")  # a value with spaces
    assert quoted.startswith("prompt 'ab ab") and quoted.endswith("ab ' is too long; shorten it")
    assert "…[119,800 characters cut]…" in quoted and len(quoted) < 300
    path = one_line("cannot read /data/" + "d/" * 500 + "corpus.txt: missing")
    assert path.endswith("d/d/corpus.txt: missing") and len(path) < 300
    spaced = one_line("words " * 50_000 + "; do this")  # no single long value: the head and the end stay
    assert spaced.startswith("words words") and spaced.endswith("; do this") and len(spaced) < 1100
    assert one_line("a\nb\r\nc\td\x1b[31m\u2028e") == "a\\nb\\r\\nc\\td\\x1b[31m\\u2028e"
    assert len(one_line("a\nb\u2028c\x0bd\x1ce\x85f".strip()).splitlines()) == 1
    start = time.perf_counter()
    one_line("'" * 100_000 + '"' * 100_000)  # unclosed quotes: one pass, not one per quote
    assert time.perf_counter() - start < 2


# ---------------------------------------------------------------------------- --json with lone surrogates

def test_print_json_escapes_lone_surrogates(capsys):
    print_json({"text": "a\ud800b", "file": "\udcff.png", "ok": "é 😀"})
    out = capsys.readouterr().out
    out.encode("utf-8")  # valid UTF-8: no surrogate left in the text
    assert out == '{"text": "a\\ud800b", "file": "\\udcff.png", "ok": "é 😀"}\n'
    assert json.loads(out) == {"text": "a\ud800b", "file": "\udcff.png", "ok": "é 😀"}


def test_json_naming_an_undecodable_file_name_is_valid_utf8(logged_run, tmp_path):
    out = os.fsencode(tmp_path) + b"/\xff.png"  # a Latin-1 name on a UTF-8 system
    result = seqlab_bytes("plot", str(logged_run), "--out", out, "--json", env={"PYTHONIOENCODING": "utf-8:strict"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.decode("utf-8"))["plot"] == os.fsdecode(out)
    assert os.path.isfile(out)


# ---------------------------------------------------------------------------- stdin that is not UTF-8

def bytes_stdin(data: bytes, errors: str) -> io.TextIOWrapper:
    """Python's stdin as the locale makes it: strict (en_US.UTF-8) or surrogateescape (C, C.UTF-8)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors=errors)


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])
def test_generate_with_stdin_that_is_not_utf8(cli, runs, monkeypatch, errors):
    monkeypatch.setattr(sys, "stdin", bytes_stdin(b"the king\n\xff\xfe is dead\n", errors))
    result = cli("generate", runs["lm"], "--prompt", "-", "--device", "cpu")
    assert_one_line_error(result)
    assert result.stderr == ("seqlab: error: stdin is not valid UTF-8 (byte 0xff at offset 9); "
                             "convert it first, e.g. with iconv -t UTF-8\n")
    assert result.stdout == ""


def test_generate_with_a_real_stdin_that_is_not_utf8(runs):
    result = seqlab_bytes("generate", str(runs["lm"]), "--prompt", "-", "--device", "cpu", stdin=b"king\n\xc3(\n")
    assert one_line_error(result).startswith("seqlab: error: stdin is not valid UTF-8 (byte 0xc3 at offset 5)")


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])
def test_chat_with_piped_stdin_that_is_not_utf8(cli, runs, monkeypatch, errors):
    monkeypatch.setattr(sys, "stdin", bytes_stdin(b"hello\nbye\nthank \xe9 you\n", errors))
    result = cli("chat", runs["s2s"], "--device", "cpu")
    assert_one_line_error(result)
    assert "stdin is not valid UTF-8 (byte 0xe9 at offset 16)" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # the lines before it were answered


def test_version_prints_the_version_without_a_command(cli):
    import seqlab

    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"seqlab {seqlab.__version__}", (r.stdout, r.stderr)
