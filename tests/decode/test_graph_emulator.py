"""The CPU stand-in for CUDA graphs (graph_emulator) has the semantics the fast-path tests rely on."""

from __future__ import annotations

import pytest
import torch
from graph_emulator import EmulatedCuda, EmulatedGraph


def _record(fn):
    graph = EmulatedGraph()
    with EmulatedCuda.graph(graph):
        out = fn()
    return graph, out


def test_capture_runs_nothing_and_replay_runs_the_recorded_ops():
    counter, buffer = torch.zeros(1), torch.arange(6.0).view(2, 3)

    def step():
        counter.add_(1)
        buffer[:, 0].mul_(2)  # a write through a view
        return buffer.sum(dim=1) + counter  # an out-of-place result, kept where it was recorded

    graph, out = _record(step)
    assert counter.item() == 0 and torch.equal(buffer, torch.arange(6.0).view(2, 3))
    graph.replay()
    graph.replay()
    assert counter.item() == 2 and buffer[:, 0].tolist() == [0.0, 12.0]
    assert out.tolist() == [0 + 1 + 2 + 2, 12 + 4 + 5 + 2]  # the recorded tensor holds the last replay's result


def test_host_values_are_frozen_at_capture():
    column, seq = {"at": 0}, torch.zeros(4)

    def write():
        seq[column["at"]] = 1.0  # a Python int: recorded as it was

    graph, _ = _record(write)
    for at in (1, 2):
        column["at"] = at
        graph.replay()
    assert seq.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_a_host_read_during_capture_is_an_error():
    flags = torch.ones(3, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="capturing"):
        _record(lambda: bool(flags.any()))
