"""The rank check end to end on a very short run (slow: it trains several tiny models)."""
from __future__ import annotations

import json

import pytest
import yaml

from nas.rank_check import run_rank_check

SEARCH = {
    "space": {"size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "arch_fraction": 0.2, "max_eval_images": 40},
    "optim": {"warmup_epochs": None, "warmup_steps": 2},
    "train": {"steps": 6, "batch_size": 16, "num_threads": 1, "progress": False},
    "search": {"warmup_epochs": 0.25, "arch_lr": 0.1, "diagnostics_batch": 0},
    "derive": {"samples": 1, "batch_size": 16, "bn_recalibration_batches": 1},
    "eval": {"nmi_pairs": 0},
}


@pytest.mark.slow
def test_rank_check_is_incremental_and_reports_agreement(tmp_path):
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(SEARCH))
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump({
        "search": "search.yaml", "policies": ["msclip", "share-all"], "random_policies": 1,
        "standalone_overrides": ["train.steps=3"], "bootstrap": 50, "top_k": 2,
    }))
    out = tmp_path / "out"
    result = run_rank_check(config, out)
    assert set(result["policies"]) == {"msclip", "share-all", "random-1", "derived"}
    assert result["agreement"]["n"] == 4 and -1 <= result["agreement"]["kendall_tau"] <= 1
    assert {"better", "no_more_params"} <= set(result["derived_vs_msclip"])
    record = json.loads((out / "results" / "msclip.json").read_text())
    assert {"supernet", "standalone", "params", "train_seconds"} <= set(record)
    again = run_rank_check(config, out)
    assert again["agreement"] == result["agreement"]
