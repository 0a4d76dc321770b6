"""Shared fixtures: SEQLAB_DATA, an in-process CLI runner, and a subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
if "SEQLAB_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SEQLAB_DATA"] = str(SHARED_DATA)

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one thread of a busy 2-core CPU (two spin against each other), and
    pinned results do not depend on the thread count. Use it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_data_file(name: str) -> Path:
    """A benchmark file from $SEQLAB_DATA (../shared/data in this project), e.g. tinyshakespeare.txt.

    Where it is absent (a clone without the project's data) the calling test is skipped, saying which
    file it needs, instead of failing on a download that cannot happen offline.
    """
    for folder in os.environ.get("SEQLAB_DATA", "").split(os.pathsep):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    pytest.skip(f"needs {name} in $SEQLAB_DATA (this project keeps it in ../shared/data)")


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data(name): the test reads $SEQLAB_DATA/name; skipped without it")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("shared_data"):
        shared_data_file(*marker.args)


@pytest.fixture(autouse=True, scope="session")
def _private_user_cache(tmp_path_factory):
    """Tests never write to the real user cache (~/.cache/seqlab): prepared data goes to a session directory."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `seqlab ARGS...` in-process: cli("data", "inspect", "x") -> Result."""
    from seqlab.cli import main

    def run(*args: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            import io

            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def run_seqlab(*args: str, stdin: str | None = None, timeout: float = 300, env: dict | None = None,
               cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m seqlab ARGS...` in a fresh process (for kills, torchrun, real stdin)."""
    return subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def wait_while_running(proc: subprocess.Popen, ready: Callable[[], object], timeout: float = 120,
                       poll: float = 0.01) -> None:
    """Poll until `ready()` is true, for tests that act on a running `seqlab` process (kill it, signal it); fail
    when the process ends first (with its stderr, when piped) or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            detail = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the process ended (exit {proc.returncode}) before the test could act on it {detail}")
        assert time.monotonic() < deadline, f"not ready after {timeout} s"
        time.sleep(poll)


def metric_lines(run: Path) -> int:
    """How many lines a run's metrics.jsonl holds so far (0 before it exists)."""
    path = run / "metrics.jsonl"
    return len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0


def assert_one_line_error(result) -> None:
    """The bad-input contract: exit code 2, one line on stderr, no traceback."""
    code = getattr(result, "exit_code", None)
    if code is None:
        code = result.returncode
    assert code == 2, (code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
