"""torchrun with 2 processes (gloo, CPU) follows the loss trajectory of one process with the same global
batch, with and without gradient accumulation."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.config import TrainConfig
from trainer.loop import train
from trainer.metrics import read_metrics
from trainer.typed_config import load_config, to_dict

pytestmark = pytest.mark.integration  # torchrun processes: make test-integration

ROOT = Path(__file__).resolve().parents[1]


def config(accum_steps: int = 1) -> TrainConfig:
    return load_config(
        {
            "model": {"policy": "msclip", "size": "tiny"},
            "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2},
            "optim": {"lr": 1e-3, "warmup_epochs": None, "warmup_steps": 2},
            "train": {
                "steps": 4, "epochs": None, "batch_size": 16, "accum_steps": accum_steps, "device": "cpu",
                "log_every": 1, "checkpoint_every": None, "progress": False, "num_threads": 1,
            },
            "eval": {"every_epochs": None, "nmi_pairs": 0, "batch_size": 64},
        },
        TrainConfig,
    )


def torchrun(cfg: TrainConfig, run_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "trainer.run", str(path), "--out", str(run_dir)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train/loss"]) for r in read_metrics(run_dir) if "train/loss" in r]


def assert_same_trajectory(a: Path, b: Path) -> None:
    one, two = losses(a), losses(b)
    assert [s for s, _ in one] == [s for s, _ in two] == [1, 2, 3, 4]
    assert max(abs(x - y) for (_, x), (_, y) in zip(one, two)) < 1e-5, (one, two)
    assert two[-1][1] < two[0][1]  # it trained


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The one-process run both torchrun runs are compared with."""
    run = tmp_path_factory.mktemp("single") / "run"
    train(config(), run)
    return run


def test_two_processes_match_one(single, tmp_path):
    torchrun(config(), tmp_path / "ddp", tmp_path)
    assert_same_trajectory(single, tmp_path / "ddp")
    checkpoint = tmp_path / "ddp" / "checkpoints" / "step_00000004"
    assert (checkpoint / "rng-rank0.json").is_file() and (checkpoint / "rng-rank1.json").is_file()


def test_two_processes_with_accumulation_match_one(single, tmp_path):
    torchrun(config(accum_steps=2), tmp_path / "ddp", tmp_path)
    assert_same_trajectory(single, tmp_path / "ddp")
