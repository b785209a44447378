"""`sharenas tune` trials that run data-parallel on 2 Ray Train workers (gloo, CPU): the trainer's
DDP path and the Gumbel search's all-reduce in the process group Ray Train sets up. Each trial's
metrics equal those of the same config under `torchrun --nproc_per_node 2`, also when a worker was
killed (or failed) mid-way and Ray Train started the workers again from the last reported checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from test_ddp import ROOT, torchrun
from test_tune import experiment
from tune_driver import SHARENAS, reported_steps, run_to_end, study
from trainer.config import TrainConfig
from trainer.typed_config import load_config
from trainer.metrics import TRAINED_SECONDS, read_metrics

pytest.importorskip("ray.train", reason="ray[train] is not installed")
pytestmark = pytest.mark.integration  # Ray Train workers on a local Ray: make test-integration

KILL_ONCE, FAIL_ONCE = "SHARENAS_TUNE_KILL_ONCE", "SHARENAS_TUNE_FAIL_ONCE"
# Two workers and the trial's driver in the 2 CPUs of a local Ray: Ray's CPUs are logical, and each
# process trains with one thread (train.num_threads).
ON_WORKERS = {"cpu": 0.5, "workers": 2, "cpu_per_worker": 0.5}


def records(run_dir: Path) -> list[dict]:
    """A run's metrics without the throughput and the seconds trained, which are measured times."""
    return [{k: v for k, v in r.items() if k not in ("train/samples_per_s", TRAINED_SECONDS)} for r in read_metrics(run_dir)]


def one_trial_on_workers(tmp_path: Path) -> Path:
    """test_tune's experiment cut to its msclip baseline (6 steps, evaluated every 2), on 2 workers."""
    config = experiment(tmp_path, n=1, scheduler="fifo", max_concurrent=1)
    search = yaml.safe_load((tmp_path / "search.yaml").read_text())
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({**search, "baselines": ["msclip"]}))
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "resources": ON_WORKERS}))
    return config


def test_a_trial_on_two_train_workers_matches_torchrun_and_a_killed_worker_resumes_from_the_last_checkpoint(tmp_path):
    run_to_end(one_trial_on_workers(tmp_path), env={KILL_ONCE: "0:4"})

    (trial,) = study(tmp_path).get_trials()
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["evaluations"] == "3/3"
    assert (tmp_path / "runs" / ".killed-once-0-4").is_file()  # process 0 was killed before reporting step 4 ...
    assert reported_steps(tmp_path, 0) == [2, 4, 6]  # ... and the workers went on from the step-2 checkpoint
    run_dir = tmp_path / "runs" / "trial_0000"
    reference = tmp_path / "torchrun"
    torchrun(load_config(run_dir / "config.yaml", TrainConfig), reference, tmp_path)
    ours, theirs = records(run_dir), records(reference)
    assert [r["step"] for r in ours if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    assert ours == theirs  # every loss, learning rate and evaluation metric, exactly
    assert trial.value == [r for r in theirs if "heldout/shapes/loss" in r][-1]["heldout/shapes/loss"]
    frame = pd.read_csv(tmp_path / "runs" / "ray_results.csv")
    assert list(frame["objective"]) == [trial.value]


def test_a_gumbel_search_on_two_train_workers_matches_torchrun_and_a_failed_one_continues_from_its_saved_state(tmp_path):
    from test_gumbel_search import SHORT

    gumbel = {**SHORT, "train": {**SHORT["train"], "checkpoint_every": 4, "device": "cpu"}, "eval": {"nmi_pairs": 0, "every_epochs": None}}
    (tmp_path / "gumbel.yaml").write_text(yaml.safe_dump(gumbel))
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({"search": "gumbel.yaml", "kind": "gumbel", "experiment": "g", "storage_path": str(tmp_path / "ray"),
                                      "grid": {"train.seed": [0]}, "max_concurrent": 1, "max_failures": 1, "resources": ON_WORKERS}))
    run_to_end(config, env={FAIL_ONCE: "seed=0:4"})
    root = tmp_path / "ray" / "g-searches"
    assert (root / ".failed-once-seed=0-4").is_file()
    frame = pd.read_csv(root / "ray_results.csv")
    assert list(frame["resumed_from_step"]) == [4]

    reference = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *SHARENAS[1:], "search", "gumbel",
               str(tmp_path / "gumbel.yaml"), "--set", "train.seed=0", "--out", str(reference)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    searched = root / "seed=0"
    for name in ("gates.json", "policy.json"):
        assert (searched / name).read_text() == (reference / name).read_text(), name
    ours, theirs = (json.loads((d / "arch.json").read_text()) for d in (searched, reference))
    assert ours["metrics"] == theirs["metrics"] and ours["provenance"]["candidates"] == theirs["provenance"]["candidates"]
    assert frame["objective"][0] == ours["metrics"]["inherited/arch_val_loss"]
