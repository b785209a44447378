"""Fault injection for testing `sharenas tune`, read from the driver's environment.

- `SHARENAS_TUNE_FAIL_ONCE=TRIAL:STEP`: trial TRIAL raises once at STEP; Tune retries it from its
  last checkpoint.
- `SHARENAS_TUNE_KILL_ONCE=TRIAL:STEP`: the process of trial TRIAL (process 0 of a trial that runs
  on Ray Train workers) is killed (SIGKILL) once at STEP; it is retried from its last checkpoint,
  by Ray Train for a trial on workers (`FailureConfig`), else by Tune.
- `SHARENAS_TUNE_HOLD=TRIAL:STEP[,TRIAL:STEP...]`: trial TRIAL stops once after STEP and waits there
  until its process is stopped or a file `.release-TRIAL-STEP` appears in the run root: a moment,
  defined by what the trial has done, to kill the driver or a node at. Its marker file holds the pid
  of the process that waits.

TRIAL is an Optuna trial number (STEP: the training step of one of its evaluations, reported to
Tune with that step's checkpoint; 0 holds the trial before it trains) or the name of a Gumbel
experiment's grid point, e.g. `seed=0` (STEP: a step at which the search saved its state). Each
fires once per experiment: a marker file in the experiment's run root says that it did.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

FAIL_ONCE_ENV = "SHARENAS_TUNE_FAIL_ONCE"
HOLD_ENV = "SHARENAS_TUNE_HOLD"
KILL_ONCE_ENV = "SHARENAS_TUNE_KILL_ONCE"


@dataclass(frozen=True)
class Faults:
    """The faults to inject into an experiment's trials (picklable: trainables carry it to workers)."""

    root: str
    fail_once: str | None = None
    hold: str | None = None
    kill_once: str | None = None

    @classmethod
    def from_env(cls, root: Path) -> "Faults":
        return cls(str(root), os.environ.get(FAIL_ONCE_ENV) or None, os.environ.get(HOLD_ENV) or None, os.environ.get(KILL_ONCE_ENV) or None)

    def _first_time(self, wanted: str | None, prefix: str, trial: object, step: int) -> bool:
        if f"{trial}:{step}" not in (wanted or "").split(","):
            return False
        marker = Path(self.root) / f".{prefix}-{trial}-{step}"
        if marker.exists():
            return False
        marker.write_text(f"{trial}:{step} pid {os.getpid()}\n")
        return True

    def maybe_fail(self, trial: object, step: int) -> None:
        if self._first_time(self.fail_once, "failed-once", trial, step):
            raise RuntimeError(f"injected failure ({FAIL_ONCE_ENV}={self.fail_once})")

    def maybe_kill(self, trial: object, step: int) -> None:
        if self._first_time(self.kill_once, "killed-once", trial, step):
            os.kill(os.getpid(), signal.SIGKILL)

    def maybe_hold(self, trial: object, step: int) -> None:
        if self._first_time(self.hold, "held", trial, step):
            release = Path(self.root) / f".release-{trial}-{step}"
            while not release.exists():
                time.sleep(0.2)
