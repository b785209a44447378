"""The supernet budget sweep: one trained supernet, policies derived at budgets from the all-shared to
the all-specific size, each scored with inherited weights; a front at the cost of the derivations."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from nas.cli import app as sharenas
from nas.supernet.sweep import SWEEP_FILE, budget_sweep, run_sweep, sweep_budgets
from search_spaces import GateSpaceConfig, SharingPolicy, count_params
from nas.supernet.model import Supernet


def test_eight_budgets_derive_at_least_six_growing_policies_from_one_supernet(short_gumbel_run) -> None:
    record = run_sweep(short_gumbel_run, count=8, reference=(4.0, 8e6)).to_json()
    budgets = record["budgets"]
    assert len(budgets) == 8
    params = [b["params"] for b in budgets]
    assert all(p <= b["budget"] for p, b in zip(params, budgets))  # every derivation fits its budget
    assert params == sorted(params)  # a larger budget never derives a smaller policy
    distinct = record["policies"]
    assert len(distinct) >= 6 and len({p["params"] for p in distinct}) == len(distinct)
    assert [p["params"] for p in distinct] == sorted(p["params"] for p in distinct)
    for p in distinct:  # the recorded counts are the standalone models' counts
        assert count_params(SharingPolicy.from_dict(p["spec"]), "tiny").total == p["params"]
        assert p["arch_val_loss"] > 0
    assert budgets[-1]["params"] == budgets[-1]["budget"]  # the last budget is the all-specific size, reached
    assert any(p["on_front"] for p in distinct) and record["hypervolume"] > 0
    assert json.loads((short_gumbel_run / SWEEP_FILE).read_text())["hypervolume"] == record["hypervolume"]


def test_the_cli_prints_the_sweep(short_gumbel_run) -> None:
    result = CliRunner().invoke(sharenas, ["search", "sweep", str(short_gumbel_run), "--budgets", "3", "--reference", "4.0,8e6"])
    assert result.exit_code == 0, result.output
    assert "hypervolume" in result.output and len(json.loads((short_gumbel_run / SWEEP_FILE).read_text())["budgets"]) == 3


def test_a_directory_that_is_no_search_is_a_clear_error(tmp_path) -> None:
    result = CliRunner().invoke(sharenas, ["search", "sweep", str(tmp_path)])
    assert result.exit_code == 2 and "is not a finished Gumbel search" in result.output


def test_uniform_gates_still_sweep_from_smallest_to_largest() -> None:
    space = GateSpaceConfig(size="tiny").build()
    cost = Supernet(space).cost_model()
    swept = budget_sweep(space, cost, torch.zeros(space.num_gates, 2), sweep_budgets(cost, 8))
    low, high = cost.extremes()
    assert swept[0][1].params == low and swept[-1][1].params == high


def test_gates_that_prefer_early_specialization_still_trim_to_the_all_shared_size() -> None:
    """With ES on, layer 0 is forced specific and ES off alone costs more: trimming must give up both."""
    space = GateSpaceConfig(size="tiny", early_specialization=True, fusion_layers=(2, 4)).build()
    cost = Supernet(space).cost_model()
    logits = torch.zeros(space.num_gates, 2)
    logits[:, 0] = 1.0  # every gate prefers shared / off ...
    logits[space.es_gate] = torch.tensor([0.0, 3.0])  # ... but ES, confidently
    low, high = cost.extremes()
    argmax = space.normalize(logits.argmax(dim=-1).tolist())
    es_off = [0 if g == space.es_gate else c for g, c in enumerate(argmax)]
    assert cost.exact(es_off) > cost.exact(argmax) > low  # no single flip reaches share-all
    swept = budget_sweep(space, cost, logits, sweep_budgets(cost, 8))
    assert swept[0][1].params == low and not swept[0][1].policy.early_specialization
    largest = swept[-1][1]  # everything specific and on, ES kept: growing never undoes a chosen ES
    assert largest.policy.early_specialization and all(c == 1 for c in largest.choices) and largest.params < high
    assert [c.params for _, c in swept] == sorted(c.params for _, c in swept)
