"""One process trains in a run directory at a time: an OS file lock on `RUN/.lock`.

    with hold_run_lock(Path("runs/x")):      # SeqlabError naming the holder's pid when another process has it
        ...train...

The lock is `flock(LOCK_EX | LOCK_NB)` on `RUN/.lock`, which then holds the holder's pid (for the
message only: the lock itself is the kernel's, so it dies with its process, `kill -9` included, and a
`.lock` file left behind means nothing). The lock file is opened in place, not written atomically:
replacing it would give a new inode that a second process could lock beside the first.

Under torchrun only rank 0 (environment RANK, absent = 0) takes the lock: the job's other ranks live
only while rank 0 does (torchrun stops the whole job when one rank exits), so rank 0's lock covers
them, and ranks of one job never conflict with each other. A second job on the same directory fails
on its rank 0, and torchrun then stops the rest of that job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from seqlab.errors import SeqlabError
from seqlab.runs import RunDir


def is_lock_rank() -> bool:
    """True in the process that locks the run: a plain process, or rank 0 of a torchrun job."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def hold_run_lock(run_dir: Path, option: str = "--out") -> Iterator[None]:
    """Create `run_dir` if needed and lock it for this process (rank 0 under torchrun) until the block ends.

    A directory this call created and that holds nothing but the lock at the end (a run that failed
    before writing anything) is removed again, so a mistyped config leaves no directory behind.
    """
    if not is_lock_rank():
        yield
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise SeqlabError(f"{option} {str(run_dir)!r} is a file, not a run directory; choose another path")
    created = not run_dir.exists()
    fd = _acquire(run_dir, option)
    try:
        yield
    finally:
        lock = RunDir(run_dir).lock
        if created and list(run_dir.iterdir()) == [lock]:
            lock.unlink()  # while still locked: see _acquire's inode check
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        os.close(fd)  # releases the lock


def _acquire(run_dir: Path, option: str) -> int:
    path = RunDir(run_dir).lock
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the directory was removed under us: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"pid {pid}" if pid else "a process that has not written its pid yet"
            raise SeqlabError(f"{option} {str(run_dir)!r} is in use: another seqlab process ({who}) is training "
                              f"in it and holds {path}; wait for it to end or stop it, or choose another "
                              "directory") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # we locked a lock file its last holder had just removed: lock the current one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None
