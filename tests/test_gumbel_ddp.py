"""The Gumbel search under 2 processes (gloo, CPU): same paths on every process, gates, weights and
BatchNorm statistics stay identical across processes, no hang although unsampled paths have no
gradient, and process 0 derives while the other waits."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.typed_config import load_config

pytestmark = pytest.mark.integration  # two processes: make test-integration

SEARCH = {
    "space": {"size": "tiny", "fusion_layers": [2, 4]},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "arch_fraction": 0.2, "max_eval_images": 40},
    "optim": {"warmup_epochs": None, "warmup_steps": 1},
    "train": {"steps": 3, "batch_size": 16, "num_threads": 1, "progress": False, "device": "cpu"},
    "search": {"warmup_epochs": 0.15, "arch_lr": 0.1, "arch_batch_size": 8, "diagnostics_batch": 0},
    "derive": {"samples": 0, "batch_size": 16, "bn_recalibration_batches": 0},
}


def _worker(rank: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)})
    dist.init_process_group("gloo", init_method=f"file://{out}/init", rank=rank, world_size=2)
    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import GumbelSearch
    from trainer.distributed import init_distributed

    search = GumbelSearch(load_config(SEARCH, GumbelConfig), Path(out) / "run", init_distributed("cpu"))
    result = search.run(retrain=False)
    torch.save({"logits": search.logits.detach(), "weights": search.supernet.state_dict(), "arch": bool(result.arch)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_keep_gates_weights_and_batch_norm_statistics_identical(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(a["logits"], b["logits"]) and a["logits"].abs().sum() > 0
    assert a["weights"].keys() == b["weights"].keys()
    different = [k for k in a["weights"] if not torch.equal(a["weights"][k], b["weights"][k])]
    assert not different, different
    # The BatchNorms of the conv stem, the branch and the adapters ran (their statistics left the
    # initial 0 / 1), so the equality above covers statistics that each process computed from its own data.
    moved = {k.split(".")[1] for k, v in a["weights"].items() if k.endswith("running_mean") and v.abs().sum() > 0}
    assert {"conv1", "parallel", "adapters"} <= moved, moved
    assert (tmp_path / "run" / "arch.json").is_file()
    assert a["arch"] and not b["arch"]  # process 0 derived and returned the arch; process 1 waited for it
