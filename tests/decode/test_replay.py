"""seqlab.decode.replay: Inductor's function called without Dynamo equals the compiled call, or there is no replay."""

from __future__ import annotations

import torch

from seqlab.decode.replay import Replay, capturing, flatten, inductor_backend


def _window_sum(x, buffers, weight):
    """x (N, D), buffers [(N, W, D)], weight (D, D) reached from outside: a dynamic W, like a KV-cache window."""
    total = sum(b.sum(dim=1) for b in buffers)  # (N, D)
    return (x + total) @ weight


def test_a_replay_equals_the_compiled_call_on_new_sizes_and_strides():
    weight = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(lambda x, buffers: _window_sum(x, buffers, weight), dynamic=False,
                             backend=inductor_backend)
    torch._dynamo.reset()

    def inputs(width, full=20, seed=1):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(3, 8, generator=g)
        buffers = [torch.randn(3, full, 8, generator=g)[:, :width] for _ in range(2)]  # views: strides of `full`
        return x, buffers

    x, buffers = inputs(5)
    for b in buffers:
        torch._dynamo.mark_dynamic(b, 1)
    with capturing() as graphs:
        out = compiled(x, buffers)
    replay = Replay.from_capture(graphs, [x, buffers], out)
    assert replay is not None and len(graphs) == 1
    assert any(how[0] == "fixed" for how in replay.recipe)  # the weight, reached from outside
    assert any(how[0] == "size" for how in replay.recipe)  # the window, a symbol
    for width, seed in ((5, 2), (11, 3), (20, 4)):
        x, buffers = inputs(width, seed=seed)
        torch.testing.assert_close(replay(x, buffers), _window_sum(x, buffers, weight))


def test_no_replay_for_a_graph_break_or_a_cached_graph():
    def broken(x):
        y = x * 2
        torch._dynamo.graph_break()
        return y + 1

    compiled = torch.compile(broken, dynamic=False, backend=inductor_backend)
    x = torch.randn(4)
    with capturing() as graphs:
        out = compiled(x)
    assert len(graphs) == 2 and Replay.from_capture(graphs, [x], out) is None
    torch.testing.assert_close(out, x * 2 + 1)

    square = torch.compile(lambda x: x * x, dynamic=False, backend=inductor_backend)
    square(x)  # compiled outside a capture: the next call finds it in Dynamo's cache
    with capturing() as graphs:
        out = square(x)
    assert graphs == [] and Replay.from_capture(graphs, [x], out) is None


def test_captures_are_per_block_and_nest():
    f = torch.compile(lambda x: x + 1, dynamic=False, backend=inductor_backend)
    g = torch.compile(lambda x: x - 1, dynamic=False, backend=inductor_backend)
    with capturing() as outer:
        f(torch.ones(2))
        with capturing() as inner:
            g(torch.ones(2))
    assert len(outer) == 1 and len(inner) == 1
    assert flatten([1, [2, 3], (4,)]) == [1, 2, 3, 4]
