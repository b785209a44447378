"""The `sharenas tune` driver as the tune tests see it: started in its own session, stopped with
exactly the processes it started, and what it leaves behind (the study, Tune's snapshot and record).
Every process session a test starts Ray in (a driver's, a cluster's nodes') is recorded in `STARTED`,
and tests/conftest.py checks at the end of the run that none of their processes is alive."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from nas.tune.cluster import nodes, session_processes, start_time, stop_processes

ROOT = Path(__file__).resolve().parents[1]
SHARENAS = [sys.executable, "-m", "nas.cli"]


STARTED: list[tuple[int, int]] = []
"""(session id, start time of its leader) of every session this test run started Ray in."""


def record_session(pid: int) -> tuple[int, int]:
    """Record the session that process `pid` leads (started with start_new_session)."""
    STARTED.append((pid, start_time(pid) or 0))  # 0: it ended already; its session's members are still found
    return STARTED[-1]


def record_cluster(cluster: Path) -> None:
    """Record the sessions of a scripts/ray_cluster.sh cluster's nodes."""
    STARTED.extend((node.session, node.leader_start) for node in nodes(cluster) if (node.session, node.leader_start) not in STARTED)


def leftovers() -> dict[int, int]:
    """pid -> start time of every live process of the sessions this run started Ray in."""
    return {pid: start for session, leader_start in STARTED for pid, start in session_processes(session, leader_start).items()}


def study(tmp_path: Path, storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name="t", storage=storage or f"sqlite:///{tmp_path}/study.db")


def completed(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    if not (tmp_path / "study.db").is_file():
        return []
    try:
        return [t for t in study(tmp_path).get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    except Exception:  # the study is being created
        return []


def start(config: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    process = subprocess.Popen([*SHARENAS, "tune", str(config), *args], cwd=cwd or config.parent,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    record_session(process.pid)
    return process


def run_to_end(config: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run `sharenas tune` to the end; returns its output (the run must succeed)."""
    process = start(config, *args, env=env, cwd=cwd)
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        stop_group(process)
    assert process.returncode == 0, output[-4000:]
    return output


def stop_group(process: subprocess.Popen) -> None:
    """The driver and the local Ray it started (its session, and what descends from it), and nothing else;
    returns once they are gone."""
    session = next(s for s in STARTED if s[0] == process.pid)
    stop_processes(lambda: session_processes(*session), grace=0)
    process.wait(timeout=60)


def wait_until(condition, what: str, driver: subprocess.Popen | None = None) -> None:
    """Poll until `condition()` holds: an event the run produces, never a fixed wait."""
    deadline = time.monotonic() + 900
    while not condition():
        if driver is not None and driver.poll() is not None:
            pytest.fail(f"the driver ended before {what}:\n{driver.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"not within 15 minutes: {what}"
        time.sleep(0.5)


def held(tmp_path: Path, trial: int, step: int) -> bool:
    """Trial `trial` stopped after its step `step` and waits for the driver to be killed (SHARENAS_TUNE_HOLD)."""
    return (tmp_path / "runs" / f".held-{trial}-{step}").is_file()


def snapshot(tmp_path: Path) -> dict[int, tuple[str, int | None, int | None]]:
    """Tune's latest experiment snapshot, what --resume restores: Optuna trial -> (Tune status, step of
    its last result, step of its latest checkpoint). Tune saves a reported checkpoint after it has
    processed the result, so a snapshot can hold a result whose checkpoint it does not hold yet."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(str(tmp_path / "ray" / "t")).trials
    except Exception:  # not written yet, or being written
        return {}

    def checkpoint_step(trial) -> int | None:
        saved = trial.latest_checkpoint_result
        return saved.metrics.get("step") if saved is not None else None

    return {t.config["optuna_trial"]: (t.status, t.run_metadata.last_result.get("step"), checkpoint_step(t)) for t in trials}


def checkpointed(tmp_path: Path, trial: int, step: int) -> bool:
    """Tune's snapshot holds trial `trial` with its result and its checkpoint of step `step`: --resume goes on from there."""
    return snapshot(tmp_path).get(trial, ("", None, None))[1:] == (step, step)


def reports(tmp_path: Path, number: int) -> list[dict]:
    """The results Tune's record of Optuna trial `number` holds, in order."""
    (ray_dir,) = [d for d in (tmp_path / "ray" / "t").glob("optuna_trial_*")
                  if json.loads((d / "params.json").read_text())["optuna_trial"] == number]
    return [json.loads(line) for line in (ray_dir / "result.json").read_text().splitlines()]


def reported_steps(tmp_path: Path, number: int) -> list[int]:
    """The steps Tune's record of Optuna trial `number` holds, in order."""
    return [r["step"] for r in reports(tmp_path, number)]


def ray_values(tmp_path: Path) -> dict[int, float]:
    """Optuna trial -> the objective of its last result in Tune's record (the driver's ray_results.csv)."""
    frame = pd.read_csv(tmp_path / "runs" / "ray_results.csv")
    return dict(zip(frame["config/optuna_trial"], frame["objective"]))
