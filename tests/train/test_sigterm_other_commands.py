"""Only the trainers catch SIGTERM: any other command (here `seqlab chat`, waiting for input) dies at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tiny_runs import LM, config_for, make_run, write_text_corpus


def test_sigterm_ends_chat_at_once(tmp_path):
    run = make_run(tmp_path / "run", config_for(write_text_corpus(tmp_path / "c.txt"), LM, "lm"))
    proc = subprocess.Popen([sys.executable, "-m", "seqlab", "chat", str(run), "--device", "cpu"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    time.sleep(3)  # loading the model, or already waiting for a line: either way SIGTERM must end it
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM  # Python's default: killed by the signal, no handler
    assert time.monotonic() - sent < 5
