"""Run metrics: one JSON object per line in RUN_DIR/metrics.jsonl, mirrored to TensorBoard when installed."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trainer import atomic

METRICS_FILE = "metrics.jsonl"
TRAINED_SECONDS = "train/seconds"
"""The wall seconds a run has trained so far, over every session it was resumed in (the log keeps each
step once: the records after a resumed run's checkpoint are redone)."""


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl (empty when there is none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trained_seconds(run_dir: str | Path) -> float:
    """The run's `TRAINED_SECONDS` at its last logged step (0.0 before the first log)."""
    values = [r[TRAINED_SECONDS] for r in read_metrics(run_dir) if r.get(TRAINED_SECONDS) is not None]
    return values[-1] if values else 0.0


class MetricsWriter:
    """Appends `{"step", "epoch", **values}` records; only the process that owns it writes.

    Non-finite floats are written as null, so every line stays valid JSON.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = None
            else:
                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records after `step` (written by a run that stopped before its next checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        atomic.write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, step: int, epoch: float, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in values.items()}
        record = {"step": step, "epoch": round(epoch, 6), **clean}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
