"""The Gumbel search under 2 processes (gloo, CPU): same paths on every process, gates and weights
stay identical across processes, no hang although unsampled paths have no gradient."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from trainer.config import load_config

SEARCH = {
    "space": {"size": "tiny", "fusion_layers": [2, 4]},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "arch_fraction": 0.2, "max_eval_images": 40},
    "optim": {"warmup_epochs": None, "warmup_steps": 1},
    "train": {"steps": 4, "batch_size": 16, "num_threads": 1, "progress": False, "device": "cpu"},
    "search": {"warmup_epochs": 0.15, "arch_lr": 0.1, "arch_batch_size": 8, "diagnostics_batch": 0},
    "derive": {"samples": 1, "batch_size": 16, "bn_recalibration_batches": 0},
}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)})
    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import GumbelSearch
    from trainer.distributed import init_distributed, shutdown

    world = init_distributed("cpu")
    try:
        search = GumbelSearch(load_config(SEARCH, GumbelConfig), Path(out) / "run", world)
        search.run(retrain=False)
        torch.save({"logits": search.logits.detach(), "weights": search.supernet.state_dict()}, f"{out}/rank{rank}.pt")
    finally:
        shutdown(world)


@pytest.mark.slow
def test_two_processes_keep_gates_and_weights_identical(tmp_path):
    mp.spawn(_worker, args=(29511, str(tmp_path)), nprocs=2)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(a["logits"], b["logits"]) and a["logits"].abs().sum() > 0
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"] if "running" not in k)
    assert (tmp_path / "run" / "arch.json").is_file()
