"""A hand-made decoder model for the engine's tests (imported by them): next-token probabilities from a table."""

from __future__ import annotations

import math

import torch
from torch import Tensor

PAD, EOS, A, B, C = range(5)


class MarkovLM(torch.nn.Module):
    """p(next | last token) = table[last token] (probabilities over the vocabulary; 0 -> log 0 = -inf).

    The state counts the steps, so `reorder_state` really has to follow the beams; `calls` records
    every token batch fed to `step`.
    """

    is_encoder_decoder = False

    def __init__(self, table: dict[int, list[float]], vocab_size: int = 5, max_length: int | None = None):
        super().__init__()
        self.vocab_size, self.max_length = vocab_size, max_length
        rows = [table.get(t, [1.0 / vocab_size] * vocab_size) for t in range(vocab_size)]
        self.register_buffer("log_probs", torch.tensor([[math.log(p) if p > 0 else -math.inf for p in r]
                                                        for r in rows]))
        self.calls: list[list[int]] = []

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int):
        return self.log_probs[input_ids[:, -1]], torch.zeros(input_ids.shape[0], dtype=torch.long)

    def step(self, tokens: Tensor, state: Tensor):
        self.calls.append(tokens.tolist())
        return self.log_probs[tokens], state + 1

    def reorder_state(self, state: Tensor, index: Tensor) -> Tensor:
        return state.index_select(0, index)



class ScriptLM(torch.nn.Module):
    """Generates `script` (then `after` forever) whatever the prompt: one-hot logits, greedy-proof."""

    is_encoder_decoder = False
    max_length = None

    def __init__(self, script: list[int], vocab_size: int, after: int = EOS):
        super().__init__()
        self.script, self.vocab_size, self.after = list(script), vocab_size, after

    def _logits(self, position: Tensor) -> Tensor:
        tokens = [self.script[p] if p < len(self.script) else self.after for p in position.tolist()]
        return torch.nn.functional.one_hot(torch.tensor(tokens), self.vocab_size).float() * 10

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int):
        position = torch.zeros(input_ids.shape[0], dtype=torch.long)
        return self._logits(position), position

    def step(self, tokens: Tensor, state: Tensor):
        return self._logits(state + 1), state + 1

    def reorder_state(self, state: Tensor, index: Tensor) -> Tensor:
        return state.index_select(0, index)


class StaticRNN(torch.nn.Module):
    """A capturable model (`capturable_step`): its state is one tensor (N, H) that `step` and
    `reorder_state` update in place, as a CUDA graph needs. h_t = tanh(E[y] + U h_{t-1}), logits = O h_t;
    weights with a large spread, so rounding cannot flip an argmax."""

    is_encoder_decoder = False
    capturable_step = True

    def __init__(self, vocab_size: int = 11, hidden: int = 16, max_length: int | None = None, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab_size, self.max_length = vocab_size, max_length
        self.register_buffer("E", torch.randn(vocab_size, hidden, generator=g))
        self.register_buffer("U", torch.randn(hidden, hidden, generator=g) / hidden ** 0.5)
        self.register_buffer("O", torch.randn(hidden, vocab_size, generator=g) * 3)

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int):
        h = torch.zeros(input_ids.shape[0], self.U.shape[0])
        for t in range(input_ids.shape[1]):
            logits, h = self.step(input_ids[:, t], h)
        return logits, h

    def step(self, tokens: Tensor, state: Tensor):
        state.copy_(torch.tanh(self.E[tokens] + state @ self.U))
        return state @ self.O, state

    def reorder_state(self, state: Tensor, index: Tensor) -> Tensor:
        picked = state.index_select(0, index)
        return state.copy_(picked) if picked.shape == state.shape else picked
