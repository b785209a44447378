"""The per-compute study's parts: the zero-cost proxies of a tiny model, the rank check scoring them
(and keeping a previous result's proxies), the halves, the anytime traces of each strategy and the
regret curve computed from a hand-written table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nas.ranking.anytime import halves, incumbent_at, proxy_trace, random_trace, tpe_trace
from nas.ranking.compute_runs import SupernetRecord
from nas.ranking.per_compute import curve, supernet_traces
from nas.ranking.per_compute_config import HyperbandSection, PerComputeConfig
from nas.zero_cost import batch_scores
from search_spaces import build_model, get_preset, get_size
from trainer.typed_config import ConfigError, load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_zero_cost_proxies_are_finite_and_tell_policies_apart():
    size = get_size("tiny")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, size.image_size, size.image_size, generator=generator)
    tokens = torch.randint(1, 100, (8, size.context_length), generator=generator)
    scores = {}
    for name in ("msclip", "clip-t768"):
        torch.manual_seed(0)
        model = build_model(get_preset(name, "tiny"), "tiny")
        scores[name] = batch_scores(model, images, tokens, torch.device("cpu"))
        assert all(p.grad is None for p in model.parameters()), "the proxies must leave .grad untouched"
    for s in scores.values():
        assert all(math.isfinite(v) and v > 0 for v in s.values())
    # clip-t768 has its own copy of every matrix msclip shares: other tensors, other gradients
    for proxy in ("grad_norm", "snip"):
        assert abs(scores["clip-t768"][proxy] - scores["msclip"][proxy]) > 0.05 * scores["msclip"][proxy]


def test_rank_check_scores_zero_cost_proxies_and_keeps_a_previous_results_proxies(tmp_path):
    from search_spaces import count_params

    from nas.bench.config import load_bench_config
    from nas.bench.policies import bench_policies
    from nas.ranking.rank_check import run_rank_check
    from nas.ranking.statistics import kendall_tau

    bench = load_bench_config(EXPERIMENTS / "bench" / "sharebench-tiny.yaml")
    policies = [(n, p) for n, p in bench_policies(bench).items() if n != "clip"][:5]
    rng = np.random.default_rng(0)
    table = {
        "config": (EXPERIMENTS / "bench" / "sharebench-tiny.yaml").read_text(),
        "noise_ceiling": {"kendall": 0.5, "kendall_ci": [0.2, 0.7], "spearman": 0.6, "top5_overlap": 0.6},
        "policies": {n: {"params": count_params(p, "tiny").total, "policy": p.to_dict(), "mean": {"val_loss": float(1 + rng.random())}}
                     for n, p in policies},
    }
    (tmp_path / "bench.json").write_text(json.dumps(table))
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump({
        "bench": "bench.json", "search": str(EXPERIMENTS / "tiny" / "gumbel.yaml"), "proxies": ["params", "grad_norm", "snip"],
        "zero_cost": {"recipe": str(EXPERIMENTS / "tiny" / "msclip.yaml"), "seeds": [0]}, "bootstrap": 200,
    }))
    result = run_rank_check(config, tmp_path / "out").to_json()
    names = [n for n, _ in policies]
    truth = [-table["policies"][n]["mean"]["val_loss"] for n in names]
    grad_norm = [result["policies"][n]["grad_norm"] for n in names]
    assert all(math.isfinite(v) and v > 0 for v in grad_norm) and len(set(grad_norm)) > 1
    assert result["proxies"]["grad_norm"]["kendall"] == pytest.approx(kendall_tau(truth, grad_norm))
    assert {"kendall", "kendall_ci", "spearman", "top5_overlap"} <= set(result["proxies"]["snip"])
    assert result["runs"]["grad_norm"]["cpu_seconds"] > 0
    # a later run scoring params alone keeps the zero-cost proxies of the previous result, in its order
    (tmp_path / "previous.json").write_text(json.dumps(result))
    again = run_rank_check(config, tmp_path / "again", ["proxies=[params]", "keep=previous.json"]).to_json()
    assert list(again["proxies"]) == ["params", "grad_norm", "snip"] and again["kept"] == ["grad_norm", "snip"]
    assert again["proxies"]["snip"] == result["proxies"]["snip"] and again["policies"][names[0]]["grad_norm"] == grad_norm[0]
    with pytest.raises(ConfigError, match="proxies: unknown synflow"):
        run_rank_check(config, tmp_path / "out", ["proxies=[synflow]"])


def test_halves_split_the_policies_and_keep_the_reference_in_the_report_half():
    names = [f"p{i:02d}" for i in range(31)] + ["msclip"]
    for seed in range(5):
        choose, report = halves(names, seed, "msclip")
        assert "msclip" in report and not set(choose) & set(report) and sorted(choose + report) == sorted(names)
        assert len(choose) == 16 and len(report) == 16
    assert halves(names, 0, "msclip") == halves(list(reversed(names)), 0, "msclip")


def test_random_and_proxy_traces_return_their_best_within_the_budget():
    loss = {"a": 2.0, "b": 1.0, "c": 3.0, "d": 1.5}
    trace = random_trace(list(loss), loss, 0.5, seed=3)
    assert [c for c, _ in trace] == [0.5, 1.0, 1.5, 2.0]
    assert incumbent_at(trace, 0.4) is None and incumbent_at(trace, 2.0) == "b" and incumbent_at(trace, 99) == "b"
    seen = [loss[p] for _, p in trace]
    assert seen == sorted(seen, reverse=True), "the incumbent never gets worse"
    assert proxy_trace(list(loss), {"a": 1, "b": 5, "c": 5, "d": 0}, 0.25) == [(0.25, "b")]
    assert incumbent_at(proxy_trace(list(loss), loss, 0.25), 0.2) is None


def test_tpe_hyperband_spends_epochs_and_returns_the_best_fully_trained_policy():
    names = ["msclip", "clip-t768", "share-all", "share-last-4", "share-ffn-only", "msclip-es"]
    policies = {n: get_preset(n, "tiny") for n in names}
    # share-last-4 is best at every epoch; every curve falls with the epochs
    curves = {n: [3.0 - 0.2 * e + 0.1 * i for e in range(6)] for i, n in enumerate(names)}
    curves["share-last-4"] = [2.0 - 0.2 * e for e in range(6)]
    for seed in (0, 1):
        trace = tpe_trace(policies, curves, seed, max_cost=50, hyperband=HyperbandSection(min_epochs=1, reduction_factor=3))
        costs = [c for c, _ in trace]
        assert costs == sorted(costs) and costs[0] == pytest.approx(1 / 6)
        assert costs[-1] <= len(names) + 1e-9, "each policy is trained at most once"
        assert incumbent_at(trace, 100) == "share-last-4"
        assert tpe_trace(policies, curves, seed, max_cost=50, hyperband=HyperbandSection()) == trace, "a seed repeats its search"
    assert tpe_trace(policies, curves, 0, max_cost=0.5, hyperband=HyperbandSection())[-1][0] == pytest.approx(0.5)
    # without pruning, on one loss per policy costing a third of a run: every policy once, then the best
    short = tpe_trace(policies, {n: [c[1]] for n, c in curves.items()}, 0, max_cost=50, curve_cost=1 / 3)
    assert [c for c, _ in short] == pytest.approx([i / 3 for i in range(1, len(names) + 1)]) and short[-1][1] == "share-last-4"


def test_regret_curve_from_a_hand_written_table():
    judge = {"a": 1.0, "b": 1.2, "c": 1.5, "msclip": 1.4}
    traces = [[(0.5, "c"), (1.0, "b")], [(1.0, "c"), (2.0, "a")]]
    result = curve("s", "test", traces, [0.5, 1.0, 2.0], judge, best=1.0, reference="msclip")
    half, one, two = result.points
    assert half.returned == ["c", None] and half.regret == [pytest.approx(0.5), None] and half.regret_std is None
    assert one.regret == [pytest.approx(0.2), pytest.approx(0.5)] and one.regret_mean == pytest.approx(0.35)
    assert one.regret_std == pytest.approx(np.std([0.2, 0.5], ddof=1)) and one.vs_reference_mean == pytest.approx(-0.05)
    assert two.returned == ["b", "a"] and two.regret_min == pytest.approx(0.0) and two.vs_reference == [pytest.approx(-0.2), pytest.approx(-0.4)]


def test_supernet_traces_charge_search_and_scoring_and_pick_the_lowest_inherited_loss():
    def record(budget: float, cpu: float, inherited: dict[str, float]) -> SupernetRecord:
        return SupernetRecord("sweep", budget, 0, 10, [], False, cpu, 1.0, inherited)

    records = [record(1.0, 90.0, {"a": 3.0, "b": 2.0, "c": 1.0}), record(0.5, 40.0, {"a": 1.0, "b": 2.0, "c": 0.5})]
    traces = supernet_traces(records, ["a", "b"], standalone=100.0)
    assert traces == {("sweep", 0): [(pytest.approx(0.42), "a"), (pytest.approx(0.92), "b")]}


def test_per_compute_config_refuses_judging_by_the_observed_seed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"observe_seed": 0, "judge_seeds": [0, 1]}))
    with pytest.raises(ConfigError, match="leave out observe_seed"):
        load_config(path, PerComputeConfig)
    path.write_text(yaml.safe_dump({"supernet": {"settings": {"x": []}, "step_cost": {}}}))
    with pytest.raises(ConfigError, match="no cost for setting x"):
        load_config(path, PerComputeConfig)
    assert load_config(EXPERIMENTS / "tiny" / "per_compute.yaml", PerComputeConfig).budgets == [0.5, 1, 2, 4, 8]


def test_per_compute_cli_computes_every_curve_from_what_was_measured(tmp_path):
    """`search per-compute --analyse-only` on ShareBench-tiny's committed tables with a hand-written
    measurement: every strategy has a point at every budget, and what it returns is judged by seed 1."""
    from typer.testing import CliRunner

    from nas.cli.app import app
    from nas.ranking.compute_runs import MEASURED_FILE, Measured, space_policies
    from nas.ranking.rank_check import read_bench_table
    from nas.supernet.config import GumbelConfig

    config = EXPERIMENTS / "tiny" / "per_compute.yaml"
    table = read_bench_table(EXPERIMENTS / "results" / "sharebench-tiny.json")
    names = sorted(space_policies(table, load_config(EXPERIMENTS / "tiny" / "gumbel-sweep.yaml", GumbelConfig)))
    params = {n: float(table.policies[n].params) for n in names}
    # the supernet's inherited loss: the bench's mean loss (a perfect ranker) at budget 1, reversed at budget 0.5
    mean = {n: table.policies[n].mean["val_loss"] for n in names}
    measured = Measured(
        standalone_cpu_seconds=100.0, standalone_steps=366,
        zero_cost={"0": {n: {"grad_norm": params[n], "snip": -params[n], "cpu_seconds": 0.1} for n in names}},
        conflict={n: 0.0 for n in names}, conflict_cpu_seconds=40.0,
        supernet=[SupernetRecord("sweep", 0.5, 0, 100, [], False, 45.0, 0.1, {n: -mean[n] for n in names}),
                  SupernetRecord("sweep", 1.0, 0, 200, [], False, 90.0, 0.1, dict(mean))],
    )
    (tmp_path / "out").mkdir()
    measured.save(tmp_path / "out" / MEASURED_FILE)
    result = CliRunner().invoke(app, ["search", "per-compute", str(config), "--out", str(tmp_path / "out"), "--analyse-only", "--json",
                                      "--markdown", str(tmp_path / "pc.md"), "--set", "search_seeds=[0,1]"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    strategies = {s["name"]: s for s in out["strategies"]}
    assert set(strategies) == {"random", "random-short", "tpe-hyperband", "tpe-short", "params", "specific_sublayers", "conflict", "grad_norm", "snip",
                               "supernet-sweep", "supernet-chosen"}
    assert all([p["budget"] for p in s["points"]] == [0.5, 1, 2, 4, 8] for s in strategies.values())
    report = out["report_half"]
    seed1 = {n: next(r.scores["val_loss"] for r in table.policies[n].runs if r.seed == 1) for n in report}
    assert out["best"] == min(report, key=seed1.get) and out["best_judged_loss"] == pytest.approx(min(seed1.values()))
    assert out["reference_regret"] == pytest.approx(seed1["msclip"] - min(seed1.values()))
    # the params proxy returns the largest report-half policy at every budget, at cost 0
    largest = max(report, key=params.get)
    assert all(p["returned"] == [largest] for p in strategies["params"]["points"])
    assert strategies["grad_norm"]["points"][0]["returned"] == [largest]
    # the conflict search costs 0.4 runs; the supernet's first search 0.45 + 0.1 * 16 / 100 runs: both return something at 0.5
    assert strategies["conflict"]["points"][0]["returned"] == [min(report)]  # all tied: the first by name
    supernet = strategies["supernet-sweep"]["points"]
    assert supernet[0]["returned"] == [max(report, key=mean.get)] and supernet[1]["returned"] == [min(report, key=mean.get)]
    assert supernet[1]["regret"][0] == pytest.approx(seed1[min(report, key=mean.get)] - min(seed1.values()))
    # random search over full runs has tried nothing at half a run
    assert strategies["random"]["points"][0]["returned"] == [None, None]
    assert "| random" in (tmp_path / "pc.md").read_text()


def test_per_compute_measures_what_the_table_cannot_give_and_goes_on_where_it_stopped(tmp_path):
    """The measured side on a miniature bench: the standalone run, the zero-cost proxies, the conflict
    search and one supernet search sized to its budget; a second call reuses all of it."""
    from typer.testing import CliRunner

    from search_spaces import count_params

    from nas.cli.app import app
    from nas.ranking.compute_runs import MEASURED_FILE, Measured

    data = {"source": "shapes", "num_shapes": 160, "shapes_zeroshot_per_class": 2, "max_eval_images": 40}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({
        "model": {"policy": "msclip", "size": "tiny"}, "data": data, "optim": {"warmup_epochs": None, "warmup_steps": 1},
        "train": {"epochs": 1, "batch_size": 32, "num_threads": 1, "progress": False}, "eval": {"every_epochs": None, "nmi_pairs": 0},
    }))
    bench = {"name": "mini", "recipe": "recipe.yaml", "space": {"size": "tiny", "early_specialization": True, "fusion_layers": [2, 4, 6, 8, 10]},
             "policies": ["msclip"], "random": {"count": 0}, "seeds": [0, 1], "heldout": {"pairs": 64, "batch_size": 32}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(bench))
    names = ["msclip", "share-all", "clip-t768", "share-last-4"]

    def table(seeds: list[int], steps: int) -> dict:
        runs = lambda i: [{"seed": s, "steps": steps, "val_loss": 2.0 + i / 10 + s / 100, "curve": [{"val_loss": 3.0 + i / 10}, {"val_loss": 2.0 + i / 10}]}
                          for s in seeds]
        return {"config": yaml.safe_dump(bench), "noise_ceiling": {"kendall": 0.5},
                "policies": {n: {"params": count_params(n, "tiny").total, "policy": get_preset(n, "tiny").to_dict(),
                                 "mean": {"val_loss": 2.0 + i / 10}, "runs": runs(i)} for i, n in enumerate(names)}}

    (tmp_path / "bench.json").write_text(json.dumps(table([0, 1], 6)))
    (tmp_path / "short.json").write_text(json.dumps(table([0], 2)))
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({
        "space": {"size": "tiny"}, "data": {**data, "arch_fraction": 0.2}, "optim": {"warmup_epochs": None, "warmup_steps": 1},
        "train": {"steps": 6, "batch_size": 16, "num_threads": 1, "progress": False}, "search": {"diagnostics_batch": 0},
        "derive": {"batch_size": 16, "bn_recalibration_batches": 1}, "eval": {"nmi_pairs": 0},
    }))
    (tmp_path / "conflict.yaml").write_text(yaml.safe_dump({
        "size": "tiny", "data": data, "train": {"steps": 2, "batch_size": 16, "num_threads": 1, "progress": False},
        "optim": {"warmup_epochs": None, "warmup_steps": 1}, "eval": {"every_epochs": None, "nmi_pairs": 0},
        "conflict": {"batches": 1, "batch_size": 16},
    }))
    config = tmp_path / "pc.yaml"
    config.write_text(yaml.safe_dump({
        "bench": "bench.json", "bench_config": "bench.yaml", "short": "short.json", "search": "search.yaml", "conflict": "conflict.yaml",
        "budgets": [1, 4], "search_seeds": [0, 1], "zero_cost_seeds": [0],
        "supernet": {"settings": {"sweep": []}, "step_cost": {"sweep": 2.0}, "budgets": [1.0], "seeds": [0]},
    }))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["search", "per-compute", str(config), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    measured = Measured.load(out / MEASURED_FILE)
    assert measured.standalone_cpu_seconds > 0 and measured.standalone_steps == 3  # one epoch of the recipe's training split
    assert set(measured.zero_cost["0"]) == set(names) and set(measured.conflict) == set(names)
    (record,) = measured.supernet
    assert record.steps == 2 and "train.steps=2" in record.overrides and not record.resumed  # 1 run of 3 steps at 2x the step cost
    assert set(record.inherited) == set(names) and all(math.isfinite(v) for v in record.inherited.values())
    curves = {s["name"]: s for s in json.loads(result.stdout)["strategies"]}
    assert curves["supernet-sweep"]["points"][1]["returned"][0] in json.loads(result.stdout)["report_half"]
    again = CliRunner().invoke(app, ["search", "per-compute", str(config), "--out", str(out), "--json"])
    assert again.exit_code == 0 and Measured.load(out / MEASURED_FILE) == measured
