"""Training metrics: `metrics.jsonl` (append-only, the source of `seqlab plot`) and TensorBoard, rank 0 only.

Each record has a `step` and named values (`train_loss`, `lr`, `val_loss`, ...); numeric values
also go to TensorBoard under their names. A resumed run first drops records newer than its checkpoint, and
TensorBoard purges events after that step, so neither log shows the lost steps twice.
"""

from __future__ import annotations

from typing import Any

from seqlab.runs import MetricsLog, RunDir


class MetricsWriter:
    def __init__(self, run: RunDir, enabled: bool, resume_step: int | None = None, tensorboard: bool = True):
        self.enabled = enabled
        self.log = MetricsLog(run.metrics)
        self.tb = None
        if not enabled:
            return
        if resume_step is not None:
            self.log.truncate_after(resume_step)
        if tensorboard:  # imported lazily: tensorboard is slow to import
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.tb = SummaryWriter(log_dir=str(run.tensorboard), purge_step=purge)

    def write(self, record: dict[str, Any], tensorboard: bool = True) -> None:
        if not self.enabled:
            return
        self.log.append(record)
        if self.tb is not None and tensorboard:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
