"""`seqlab serve` on the command line: its help, one-line errors before anything loads, the default address,
and a clean exit on Ctrl-C."""

from __future__ import annotations

import signal
import socket

import pytest
from conftest import assert_one_line_error

pytest_plugins = ["live_server"]  # the session's runs and server (tests/serve/live_server.py)


def test_help_says_what_it_serves_and_how(cli):
    result = cli("serve", "--help")
    assert result.exit_code == 0
    for text in ("/v1/chat/completions", "/v1/completions", "--api-key", "SEQLAB_API_KEY", "127.0.0.1", "--max-batch",
                 "--max-queue", "--compile", "/health"):
        assert text in result.stdout, text


def test_a_missing_run_is_one_line(cli, tmp_path):
    result = cli("serve", tmp_path / "nope", "--port", "0")
    assert_one_line_error(result)
    assert "does not exist" in result.stderr


def test_two_runs_with_one_name_are_one_line(cli, serve_runs, tmp_path):
    (tmp_path / "lm").symlink_to(serve_runs["lm"])
    result = cli("serve", serve_runs["lm"], tmp_path / "lm", "--port", "0")
    assert_one_line_error(result)
    assert "share the name 'lm'" in result.stderr


def test_a_port_in_use_is_one_line(cli, serve_runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("serve", serve_runs["lm"], "--port", str(taken.getsockname()[1]), "--device", "cpu")
    assert_one_line_error(result)
    assert "address already in use" in result.stderr.lower() and "--port" in result.stderr


@pytest.mark.parametrize("args", [["--max-batch", "0"], ["--max-queue", "0"], ["--port", "70000"]])
def test_bad_limits_are_one_line(cli, serve_runs, args):
    assert_one_line_error(cli("serve", serve_runs["lm"], *args))


def test_it_binds_the_loopback_address_by_default(server):
    assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_ctrl_c_stops_it_cleanly(serve_runs, launch):
    live = launch([serve_runs["lm"]])
    live.proc.send_signal(signal.SIGINT)
    assert live.proc.wait(timeout=30) == 130  # seqlab's exit code for Ctrl-C, after a graceful shutdown
    assert live.tracebacks() == []
