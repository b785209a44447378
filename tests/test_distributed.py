"""The collectives of `trainer.distributed` under 2 processes (gloo, CPU). The spawned workers import
only this module, torch and `trainer.distributed`, so they start quickly."""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from trainer.distributed import BatchNormStats, World, gather_rows, run_on_main


def _gather_worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    rows = [torch.arange(4.0).view(2, 2), torch.arange(4.0, 10.0).view(3, 2)][rank].requires_grad_()
    gathered, offset = gather_rows(rows, World(rank=rank, world_size=2))
    (gathered**2).sum().backward()
    torch.save({"gathered": gathered.detach(), "offset": offset, "grad": rows.grad}, f"{results}.{rank}")
    dist.destroy_process_group()


@pytest.mark.integration
def test_gather_rows_with_uneven_ranks_passes_gradients_back(tmp_path):
    """Ranks with different row counts (failed images dropped) gather in rank order; the gradient of
    every rank's loss reaches the rows' owner (summed over ranks)."""
    mp.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    expected = torch.arange(10.0).view(5, 2)
    for rank, (offset, rows) in enumerate([(0, expected[:2]), (2, expected[2:])]):
        got = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        assert torch.equal(got["gathered"], expected) and got["offset"] == offset
        torch.testing.assert_close(got["grad"], 2 * 2 * rows)


def _wait_worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    dist.barrier()
    dist.set_timeout(datetime.timedelta(seconds=1))  # the default group now gives up on a wait of over a second

    def work() -> str:
        time.sleep(4)
        return "derived"

    got = run_on_main(World(rank=rank, world_size=2), work, timeout_s=600)
    dist.barrier()  # the default group still works afterwards
    Path(f"{results}.{rank}").write_text(json.dumps(got))
    dist.destroy_process_group()


@pytest.mark.integration
def test_run_on_main_outlasts_the_default_groups_timeout(tmp_path):
    """Process 0 works for longer than the default group's timeout; process 1 waits for it (in a
    group with its own timeout) and both carry on."""
    mp.spawn(_wait_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    assert [json.loads((tmp_path / f"out.{rank}").read_text()) for rank in (0, 1)] == ["derived", None]


def test_batch_norm_stats_are_those_of_the_norms_that_ran():
    """Only the BatchNorms that ran in training mode since the last call are returned for averaging:
    one on an unsampled path (or run in eval mode) keeps its statistics out of the collective."""
    first, second = nn.BatchNorm1d(3), nn.BatchNorm1d(2)
    stats = BatchNormStats(nn.Sequential(first, second, nn.LayerNorm(2)))
    assert stats.ran() == []
    first(torch.randn(4, 3))
    ran = stats.ran()
    assert len(ran) == 2 and ran[0] is first.running_mean and ran[1] is first.running_var
    assert stats.ran() == []
    second.eval()(torch.randn(4, 2))
    assert stats.ran() == []
    second.train()(torch.randn(4, 2))
    first(torch.randn(4, 3))
    assert [t.shape[0] for t in stats.ran()] == [3, 3, 2, 2]
