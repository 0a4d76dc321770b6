"""Running torch.nn.RNN / LSTM / GRU one decoding step at a time, fast on CPU.

On CPU, torch hands RNN calls to oneDNN, which is quicker over whole sequences (training, prefill) but
spends a fixed set-up time on every call: for a one-token decoding step of a small LSTM that set-up
costs several times the step itself with ATen's kernel. `run_rnn` uses ATen's kernel for single-step
CPU calls only; the numbers are the same cell equations either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def run_rnn(rnn: nn.RNNBase, x: Tensor, hidden: Any = None) -> tuple[Tensor, Any]:
    """`rnn(x, hidden)` for batch-first x (B, T, C); a single CPU step (T == 1) skips oneDNN."""
    if x.device.type != "cpu" or x.size(1) != 1 or not torch.backends.mkldnn.enabled:
        return rnn(x, hidden)
    torch.backends.mkldnn.enabled = False
    try:
        return rnn(x, hidden)
    finally:
        torch.backends.mkldnn.enabled = True
