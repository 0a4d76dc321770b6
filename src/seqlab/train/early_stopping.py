"""Best-checkpoint bookkeeping and early stopping on a validation loss (lower is better)."""

from __future__ import annotations

import math
from typing import Any


class BestTracker:
    """Remembers the best validation loss; `should_stop` after `patience` evaluations without improvement."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best = math.inf
        self.best_step: int | None = None
        self.bad_evals = 0

    def update(self, step: int, value: float) -> bool:
        """Record an evaluation; True when it is a new best."""
        if value < self.best:
            self.best, self.best_step, self.bad_evals = value, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evals >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step, self.bad_evals = state["best"], state["best_step"], state["bad_evals"]
