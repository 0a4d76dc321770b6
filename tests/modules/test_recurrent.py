import pytest
import torch

from seqlab.modules.recurrent import run_rnn


@pytest.mark.parametrize("cell", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_single_steps_equal_the_whole_sequence(cell):
    torch.manual_seed(0)
    rnn = cell(8, 16, num_layers=2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        full, _ = rnn(x)  # (B, T, H), oneDNN's sequence kernel where available
        hidden, outs = None, []
        for t in range(5):
            out, hidden = run_rnn(rnn, x[:, t:t + 1], hidden)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-6, rtol=1e-5)
    assert torch.backends.mkldnn.enabled  # the flag is restored
