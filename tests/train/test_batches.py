import pytest
import torch

from seqlab.errors import ConfigError
from seqlab.train.batches import WindowSampler


def test_windows_are_slices_of_the_stream_shifted_by_one():
    stream = torch.arange(1000)
    sampler = WindowSampler(stream, context_length=8, batch_size=6, grad_accum=2, seed=0)
    micro = sampler.next_step()
    assert len(micro) == 2
    for x, y in micro:
        assert x.shape == y.shape == (3, 8)
        assert torch.equal(y, x + 1)  # arange stream: each target is the next token
        assert int(x.max()) + 1 < 1000


def test_ranks_split_the_single_process_batch():
    stream = torch.randint(50, (500,))
    single = WindowSampler(stream, 4, batch_size=8, grad_accum=2, seed=3)
    ranks = [WindowSampler(stream, 4, batch_size=8, grad_accum=2, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        whole = single.next_step()
        parts = [s.next_step() for s in ranks]
        for k in range(2):  # micro-batch k of the step = rank 0's rows then rank 1's rows
            assert torch.equal(whole[k][0], torch.cat([parts[0][k][0], parts[1][k][0]]))
            assert torch.equal(whole[k][1], torch.cat([parts[0][k][1], parts[1][k][1]]))


def test_generator_state_restores_the_data_position():
    stream = torch.arange(300)
    a = WindowSampler(stream, 5, 4, 1, seed=7)
    for _ in range(3):
        a.next_step()
    state = a.state_dict()
    expected = [a.next_step()[0][0] for _ in range(2)]
    b = WindowSampler(stream, 5, 4, 1, seed=999)
    b.load_state_dict(state)
    assert all(torch.equal(e, b.next_step()[0][0]) for e in expected)


def test_batch_must_split_over_accumulation_and_ranks():
    with pytest.raises(ConfigError, match="divisible"):
        WindowSampler(torch.arange(100), 4, batch_size=6, grad_accum=2, seed=0, rank=0, world_size=2)
