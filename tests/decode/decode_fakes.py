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


class ReplayLike:
    """The GPU fast path's host logic on a CPU (a stand-in for `seqlab.decode.graphs.CapturedStep`).

    A CUDA graph records `advance`'s step + choice once per plan and replays its kernels: the Python in
    between does not run again, so whatever the choice reads on the host is what it read when recorded.
    `advance` here runs step + choice eagerly, but with the host's `length` frozen at the plan's first
    call, the one host value the choice reads that changes from step to step.
    """

    instances: list[ReplayLike] = []

    def __init__(self, model, compiled=False):
        self.model, self.frozen, self.advances = model, {}, 0
        ReplayLike.instances.append(self)

    def __call__(self, tokens, state):
        return self.model.step(tokens, state)

    def advance(self, choice, tokens, state, plan):
        self.advances += 1
        owner = choice.__self__ if hasattr(choice, "__self__") else choice  # Beams.choose or a Choice
        live, owner.length = owner.length, self.frozen.setdefault(plan, owner.length)
        try:
            return choice(self.model.step(tokens, state)[0])
        finally:
            owner.length = live


def replay_fast_path(monkeypatch) -> list[ReplayLike]:
    """Make generate() take the GPU fast path on a CPU with ReplayLike steps; returns the steps it makes."""
    import importlib

    generate_module = importlib.import_module("seqlab.decode.generate")  # the module, not the function
    ReplayLike.instances.clear()
    monkeypatch.setattr(generate_module, "use_fast_path", lambda *args: True)
    monkeypatch.setattr(generate_module, "CapturedStep", ReplayLike)
    return ReplayLike.instances
