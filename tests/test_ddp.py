"""torchrun with 2 processes (gloo, CPU) follows the loss trajectory of one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from trainer.config import TrainConfig, load_config, to_dict
from trainer.distributed import World, gather_rows
from trainer.loop import train
from trainer.metrics import read_metrics

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


def test_two_processes_match_one(tmp_path):
    train(config(), tmp_path / "single")
    torchrun(config(), tmp_path / "ddp", tmp_path)
    assert_same_trajectory(tmp_path / "single", tmp_path / "ddp")
    checkpoint = tmp_path / "ddp" / "checkpoints" / "step_00000004"
    assert (checkpoint / "rng-rank0.json").is_file() and (checkpoint / "rng-rank1.json").is_file()


@pytest.mark.slow
def test_two_processes_with_accumulation_match_one(tmp_path):
    train(config(), tmp_path / "single")
    torchrun(config(accum_steps=2), tmp_path / "ddp", tmp_path)
    assert_same_trajectory(tmp_path / "single", tmp_path / "ddp")


def _gather_worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    rows = [torch.arange(4.0).view(2, 2), torch.arange(4.0, 10.0).view(3, 2)][rank].requires_grad_()
    gathered, offset = gather_rows(rows, World(rank=rank, world_size=2))
    (gathered**2).sum().backward()
    torch.save({"gathered": gathered.detach(), "offset": offset, "grad": rows.grad}, f"{results}.{rank}")
    dist.destroy_process_group()


def test_gather_rows_with_uneven_ranks_passes_gradients_back(tmp_path):
    """Ranks with different row counts (failed images dropped) gather in rank order; the gradient of
    every rank's loss reaches the rows' owner (summed over ranks)."""
    mp.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    expected = torch.arange(10.0).view(5, 2)
    for rank, (offset, rows) in enumerate([(0, expected[:2]), (2, expected[2:])]):
        got = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        assert torch.equal(got["gathered"], expected) and got["offset"] == offset
        torch.testing.assert_close(got["grad"], 2 * 2 * rows)
