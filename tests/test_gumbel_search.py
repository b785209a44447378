"""The Gumbel search end to end on a very short run: outputs, diagnostics, entropy, budget, CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from typer.testing import CliRunner

from nas.cli import app as sharenas
from nas.cli.search_gumbel import gumbel
from nas.supernet.config import GumbelConfig
from nas.supernet.search import GumbelSearch, run_gumbel_search
from search_spaces import SharingPolicy, count_params
from trainer.distributed import World
from trainer.metrics import read_metrics
from trainer.typed_config import ConfigError, load_config

SHORT: dict[str, dict] = {
    "space": {"size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "arch_fraction": 0.2, "max_eval_images": 40},
    "optim": {"lr": 2.0e-3, "warmup_epochs": None, "warmup_steps": 2},
    "train": {"steps": 10, "batch_size": 16, "num_threads": 1, "progress": False},
    "search": {"warmup_epochs": 0.25, "arch_lr": 0.1, "diagnostics_batch": 8},
    "derive": {"samples": 2, "batch_size": 16, "bn_recalibration_batches": 1},
    "eval": {},
}


def short_config(**sections) -> GumbelConfig:
    raw = {key: {**value, **sections.get(key, {})} for key, value in SHORT.items()}
    return load_config(raw, GumbelConfig)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gumbel")
    run_gumbel_search(short_config(eval={"nmi_pairs": 0, "every_epochs": None}), out, retrain=True)
    return out


def test_search_writes_an_arch_json_and_a_policy_that_params_accepts(search_run):
    """Also: `--retrain` trains the winner from scratch and records its metrics in arch.json."""
    arch = json.loads((search_run / "arch.json").read_text())
    assert arch["schema"] == "sharenas/arch/v2" and arch["size"] == "tiny"
    policy = SharingPolicy.load(search_run / "arch.json")
    assert SharingPolicy.load(search_run / "policy.json") == policy
    assert arch["params"]["total"] == count_params(policy, "tiny").total
    assert arch["metrics"]["inherited/arch_val_loss"] > 0 and "retrain/zeroshot/shapes/top1" in arch["metrics"]
    assert read_metrics(search_run / "retrain")[-1]["step"] == 10
    candidates = arch["provenance"]["candidates"]
    assert candidates[0]["source"] == arch["provenance"]["selected"]
    assert candidates[0]["arch_val_loss"] == min(c["arch_val_loss"] for c in candidates)
    assert {"argmax"} <= {c["source"] for c in candidates} | {d for c in candidates for d in c["also_drawn_as"]}
    for name in ("arch.json", "policy.json"):
        result = CliRunner().invoke(sharenas, ["params", str(search_run / name), "--size", "tiny", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["total"] == arch["params"]["total"]


def test_diagnostics_are_logged_and_gate_entropy_decreases(search_run):
    records = read_metrics(search_run)
    assert records[0]["step"] == 0 and records[-1]["step"] == 10 and len(records) == 3
    first, last = records[0], records[-1]
    assert first["search/entropy"] == pytest.approx(math.log(2))
    assert last["search/entropy"] < first["search/entropy"] - 1e-3
    assert first["search/temperature"] == 10.0 and last["search/temperature"] == pytest.approx(0.1)
    gates = [k for k in last if k.startswith("gate/")]
    assert len(gates) == 54 and "gate/es/p_on" in last and "gate/L05.attn/p_specific" in last
    cosines = {k: v for k, v in last.items() if k.startswith("grad_cos/")}
    assert len(cosines) == 48 and all(-1.0 <= v <= 1.0 for v in cosines.values())
    assert "search/arch_loss" in last and "search/train_loss" in last


def _gate_phase(out, budget=None):
    """Only the architecture steps (on the held-out split), then derive."""
    cfg = short_config(search={"budget": budget, "budget_mode": "penalty", "budget_weight": 20.0, "diagnostics_batch": 0})
    search = GumbelSearch(cfg, out, World())
    search.out.mkdir(parents=True)
    batches = search._batches(search.bundle.arch, search.arch_plan)
    for step in range(2, 14):
        search.arch_step(*next(batches), step)
    return search, search._derive(0.0)


def test_a_tight_budget_yields_a_smaller_policy_within_the_budget(tmp_path):
    free, free_arch = _gate_phase(tmp_path / "free")
    low, high = free.cost.extremes()
    budget = low + (high - low) // 6
    tight, tight_arch = _gate_phase(tmp_path / "tight", budget)
    assert tight_arch.params.total <= budget < free_arch.params.total
    expected = lambda s: float(s.cost.expected(torch.softmax(s.logits.detach(), dim=-1)))
    assert expected(tight) < expected(free)
    argmax = next(c for c in tight_arch.provenance["candidates"] if c["source"] == "argmax" or "argmax" in c["also_drawn_as"])
    assert argmax["within_budget"]


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    with pytest.raises(ConfigError, match="arch_fraction"):
        short_config(data={"arch_fraction": 0.0})
    with pytest.raises(ConfigError, match="search.budget"):
        short_config(search={"budget": "lots"})
    app = typer.Typer()
    app.command("gumbel")(gumbel)
    app.command("other")(lambda: None)
    config = tmp_path / "bad.yaml"
    config.write_text("search:\n  budget: 1k\n")
    result = CliRunner().invoke(app, ["gumbel", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "below the smallest policy" in result.output and len(result.output.strip().splitlines()) == 1
