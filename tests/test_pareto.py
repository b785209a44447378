"""Pareto fronts of multi-objective studies: dominance of the baselines (and by which trial), the
hypervolume against a fixed reference point, and NSGA-II crossing over once the baselines are points
of the space. Studies are hand-made or run with a policy-determined loss in place of training (the
search logic under test does not depend on how the loss was obtained)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import TrialState, create_trial

from nas.bench.record import BenchRecord
from nas.discrete.config import load_search_config
from nas.discrete.records import BASELINE_PARAM, baseline_params
from nas.discrete.results import PARETO_JSON
from nas.discrete.search import run_search
from nas.pareto.front import dominated_by, hypervolume, pareto_mask, to_minimization
from nas.pareto.record import Objective, ParetoRecord, ParetoTrial
from nas.supernet.sweep_record import SweepPolicy, SweepRecord
from nas.pareto.study import REFERENCE_ATTR, format_value, pareto_results
from search_spaces import LayoutSpace, LayoutSpaceConfig, SharingPolicy, count_params, get_preset
from trainer.loop import TrainResult

LOSS = "heldout/shapes/loss"


def _study(points: list[tuple[str, float, float, str | None]], directions=("minimize", "minimize")) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(directions), study_name="front")
    study.set_metric_names([LOSS, "params"])
    study.set_user_attr(REFERENCE_ATTR, {LOSS: 4.0, "params": 200.0})
    names = [p[0] for p in points]
    for name, loss, params, baseline in points:
        attrs = {"policy_name": name, "seconds": 10.0, **({"baseline": baseline} if baseline else {})}
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[loss, params], params={"layout": name},
                                     distributions={"layout": CategoricalDistribution(names)}, user_attrs=attrs))
    return study


POINTS = [
    ("msclip", 3.0, 100.0, "msclip"),      # trial 0: on the front
    ("clip", 3.2, 150.0, "clip"),          # trial 1: dominated by 0, 2 and 3; best loss among front members: 3
    ("msclip-s", 2.9, 133.0, "msclip-s"),  # trial 2: dominated by trial 3 only
    ("a", 2.8, 120.0, None),               # trial 3
    ("b", 3.1, 90.0, None),                # trial 4
]


def test_dominated_baselines_name_the_dominating_trial() -> None:
    results = pareto_results(_study(POINTS)).to_json()
    assert results["baselines"] == {
        "msclip": {"trial": 0, "dominated": False, "by": None},
        "clip": {"trial": 1, "dominated": True, "by": 3},
        "msclip-s": {"trial": 2, "dominated": True, "by": 3},
    }
    assert [p["trial"] for p in results["pareto"]] == [0, 3, 4]
    assert results["pareto"][1]["objectives"] == {LOSS: 2.8, "params": 120.0}


def test_hypervolume_is_the_staircase_area_under_the_reference_point() -> None:
    results = pareto_results(_study(POINTS)).to_json()
    # front sorted by loss: (2.8, 120), (3.0, 100), (3.1, 90) against (4.0, 200)
    assert results["hypervolume"] == pytest.approx(1.2 * 80 + 1.0 * 20 + 0.9 * 10)
    assert results["reference_point"] == {LOSS: 4.0, "params": 200.0}
    history = [h["hypervolume"] for h in results["hypervolume_history"]]
    assert history[0] == pytest.approx(1.0 * 100) and history[-1] == pytest.approx(results["hypervolume"])
    assert all(a <= b for a, b in zip(history, history[1:]))
    assert results["compute_seconds"] == 50.0


def test_maximized_objectives_are_negated_with_their_reference() -> None:
    values = to_minimization([[30.0, 100.0], [32.0, 150.0]], ["maximize", "minimize"])
    ref = to_minimization([[20.0, 200.0]], ["maximize", "minimize"])[0]
    assert list(pareto_mask(values)) == [True, True]
    assert hypervolume(values, ref) == pytest.approx(10 * 100 + 2 * 50)
    assert dominated_by(np.array([-29.0, 120.0]), values).by == 0


def test_points_outside_the_reference_point_add_nothing() -> None:
    assert hypervolume(np.array([[5.0, 10.0], [3.0, 300.0]]), [4.0, 200.0]) == 0.0


def test_numbers_are_formatted_for_tables() -> None:
    assert format_value("params", 602644.0) == "602,644"
    assert format_value(LOSS, 3.46212345) == "3.4621"
    assert format_value("zeroshot/digits/top1", 97.123) == "97.12"


# the Optuna driver ------------------------------------------------------------------------------------

TRAIN = {
    "model": {"size": "tiny"},
    "data": {"source": "digits", "digit_repeats": 1, "max_eval_images": 60},
    "train": {"epochs": None, "steps": 1, "batch_size": 16, "num_threads": 1, "progress": False, "checkpoint_every": None},
    "eval": {"every_epochs": None, "every_steps": None, "nmi_pairs": 0},
}


def policy_loss(cfg, run_dir, **kw) -> TrainResult:
    """A loss determined by the policy: 3 minus 0.01 per specific sublayer."""
    policy = SharingPolicy.load(cfg.model.policy)
    specific = sum(not layer.is_shared(s) for layer in policy.layers for s in ("attn", "ffn", "ln1", "ln2"))
    return TrainResult(Path(run_dir), 1, {LOSS: 3.0 - 0.01 * specific})


def mo_config(tmp_path: Path, sampler: dict, space: dict, n_trials: int) -> dict:
    return {
        "study_name": "mo", "out_dir": str(tmp_path / "runs"), "n_trials": n_trials, "baselines": ["msclip", "clip", "msclip-s"],
        "objective": {"kind": "multi", "metric": LOSS, "direction": "minimize", "costs": ["params", "flops"],
                      "reference_point": {LOSS: 3.5}},
        "sampler": {"seed": 0, **sampler}, "pruner": {"kind": "none"}, "space": space, **TRAIN,
    }


SPACE = {"layouts": ["sublayers"], "sublayer_combos": ["none", "attn+ffn"], "narrow_text": True}


def test_baselines_are_points_of_the_space_so_nsga2_crosses_over(tmp_path: Path) -> None:
    cfg = load_search_config(mo_config(tmp_path, {"kind": "nsga2", "population_size": 2}, SPACE, n_trials=6))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(cfg, storage=url, train_fn=policy_loss)
    study = optuna.load_study(study_name="mo", storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    for t in trials[:3]:  # baselines: the preset trained, under its parameters in the space
        assert BASELINE_PARAM not in t.params and t.params["layout"] == "sublayers"
        assert SharingPolicy.from_dict(t.user_attrs["policy"]) == get_preset(t.user_attrs["baseline"], "tiny")
    space = IntersectionSearchSpace().calculate(study)
    assert {"layout", "parallel_branch", *(f"sublayers_l{i:02d}" for i in range(12))} <= set(space)
    # Generation 1 is bred from generation 0: the child's layer choices come from its parents but for
    # mutations (probability 1/14 per parameter here); drawn at random, it would miss both parents on
    # about a quarter of the layers where they agree.
    parents = study._storage.get_study_system_attrs(study._study_id)["NSGAIISampler:parent:1"]
    by_id = {t._trial_id: t for t in trials}
    child = next(t for t in trials if t.system_attrs.get("NSGAIISampler:generation") == 1)
    layers = [f"sublayers_l{i:02d}" for i in range(12)]
    inherited = [child.params[n] in {by_id[p].params[n] for p in parents} for n in layers]
    assert sum(inherited) >= 11, inherited
    # The three objectives, in order: the loss of the policy, its parameters, its FLOPs.
    t = trials[0]
    assert t.values[:2] == [t.user_attrs["metrics"][LOSS], float(count_params(get_preset("msclip", "tiny"), "tiny").total)]
    assert t.values[2] == t.user_attrs["costs"]["flops"] > 0
    results = json.loads((tmp_path / "runs" / PARETO_JSON).read_text())
    assert set(results["reference_point"]) == {LOSS, "params", "flops"} and results["reference_point"][LOSS] == 3.5
    assert results["hypervolume"] > 0 and set(results["baselines"]) == {"msclip", "clip", "msclip-s"}


def test_a_baseline_outside_the_space_keeps_its_own_parameter() -> None:
    space = LayoutSpace(LayoutSpaceConfig(layouts=["sublayers"]), "tiny")  # no narrow text width: clip is no point of it
    assert baseline_params(space, "clip") == {BASELINE_PARAM: "clip"}
    assert baseline_params(space, "msclip")["layout"] == "sublayers"


def test_multi_objective_defaults_to_tpe(tmp_path: Path) -> None:
    cfg = load_search_config(mo_config(tmp_path, {}, SPACE, n_trials=3))
    assert (cfg.sampler_kind, cfg.objective.directions) == ("tpe", ["minimize", "minimize", "minimize"])


# judged against the bench -----------------------------------------------------------------------------

BENCH = json.loads((Path(__file__).resolve().parents[1] / "experiments" / "results" / "sharebench-tiny.json").read_text())
TABLE = BenchRecord.from_json(BENCH)


def test_the_true_front_judges_itself_at_ratio_one_and_a_single_baseline_below() -> None:
    from nas.bench.front import bench_points, judge, true_front

    truth, known = true_front(TABLE), bench_points(TABLE)
    assert truth["reference_point"]["val_loss"] == pytest.approx(np.log(128))  # chance: batches of 128
    assert truth["reference_point"]["params"] == 2 * count_params(get_preset("clip-t768", "tiny"), "tiny").total
    specs = {name: p["policy"] for name, p in BENCH["policies"].items()}
    itself = judge("truth", [specs[p["policy"]] for p in truth["front"]], 0.0, known, truth)
    assert itself["hypervolume_ratio"] == pytest.approx(1.0) and itself["missing"] == []
    msclip = judge("msclip only", [specs["msclip"]], 133.0, known, truth)
    assert 0.0 < msclip["hypervolume_ratio"] < 1.0 and msclip["compute_standalone_runs"] == pytest.approx(133.0 / truth["standalone_run_seconds"])


def test_the_noise_ceiling_is_the_front_one_seed_picks() -> None:
    from nas.bench.front import reference_point, true_front

    ceiling = true_front(TABLE)["one_seed_fronts"]
    assert [r["chosen_by_seed"] for r in ceiling] == [0, 1] and [r["judged_by_seeds"] for r in ceiling] == [[1], [0]]
    assert all(0.0 < r["hypervolume_ratio"] <= 1.0 + 1e-12 and 0.0 < r["hypervolume_ratio_other_seeds"] <= 1.0 + 1e-12 for r in ceiling)
    # seed 0's front, by hand: the policies no other policy beats on seed 0's loss and parameters
    runs = {n: next(r["val_loss"] for r in p["runs"] if r["seed"] == 0) for n, p in BENCH["policies"].items()}
    picked = [n for n, p in BENCH["policies"].items()
              if not any(runs[m] <= runs[n] and q["params"] <= p["params"] and (runs[m], q["params"]) != (runs[n], p["params"])
                         for m, q in BENCH["policies"].items())]
    assert ceiling[0]["front_size"] == len(picked)
    ref = reference_point(TABLE)
    means = np.array([[BENCH["policies"][n]["mean"]["val_loss"], BENCH["policies"][n]["params"]] for n in picked])
    assert ceiling[0]["hypervolume_ratio"] == pytest.approx(hypervolume(means, ref) / true_front(TABLE)["hypervolume"])
    # seeds that agree pick the true front itself
    agreeing = {**BENCH, "policies": {n: {**p, "runs": [{**r, "val_loss": p["mean"]["val_loss"]} for r in p["runs"]]}
                                      for n, p in BENCH["policies"].items()}}
    assert [r["hypervolume_ratio"] for r in true_front(BenchRecord.from_json(agreeing))["one_seed_fronts"]] == pytest.approx([1.0, 1.0])


def test_a_chosen_policy_outside_the_bench_is_missing_not_guessed() -> None:
    from nas.bench.front import bench_points, judge, true_front

    truth = true_front(TABLE)
    outside = get_preset("share-last-3", "tiny").to_dict()  # share-last-3 is not among the 33
    result = judge("s", [BENCH["policies"]["msclip"]["policy"], outside], None, bench_points(TABLE), truth)
    assert result["missing"] == ["share-last-3"] and result["hypervolume_ratio"] is None
    assert result["scored"] == ["msclip"] and result["hypervolume_ratio_of_scored_policies"] > 0


def _scores_table(loss: float, seeds: tuple[int, ...] = (0, 1)) -> BenchRecord:
    """A further table with the bench's recipe (but `seeds`): msclip trained again (each seed 0.01 worse)
    and share-last-3 at `loss`."""
    msclip = BENCH["policies"]["msclip"]
    config = yaml.safe_dump({**yaml.safe_load(BENCH["config"]), "name": "extra", "policies": ["msclip", "share-last-3"],
                             "seeds": list(seeds)})
    spec = get_preset("share-last-3", "tiny").to_dict()
    added = {**msclip, "policy": spec, "params": count_params(get_preset("share-last-3", "tiny"), "tiny").total,
             "mean": {**msclip["mean"], "val_loss": loss}}
    again = {**msclip, "runs": [{**r, "val_loss": r["val_loss"] + 0.01} for r in msclip["runs"] if r["seed"] in seeds]}
    return BenchRecord.from_json({**BENCH, "config": config, "policies": {"msclip": again, "share-last-3": added}})


def test_policies_trained_apart_with_the_bench_recipe_are_scored_and_can_pass_the_bench_front() -> None:
    from nas.bench.front import judge, scored_points, true_front

    bench_only = true_front(TABLE)
    known, repeats = scored_points(TABLE, {"extra.json": _scores_table(1.0)})
    truth = true_front(TABLE, known)
    runs = {r["seed"]: r["val_loss"] for r in BENCH["policies"]["msclip"]["runs"]}  # seeds 0, 1 and 2
    assert [(r["policy"], r["source"], r["seeds"]) for r in repeats] == [("msclip", "extra.json", [0, 1])]
    assert repeats[0]["bench"] == pytest.approx((runs[0] + runs[1]) / 2)  # over the seeds both trained
    assert repeats[0]["again"] == pytest.approx((runs[0] + runs[1]) / 2 + 0.01) and repeats[0]["max_seed_difference"] == pytest.approx(0.01)
    assert known[next(k for k, p in known.items() if p["policy"] == "msclip")]["source"] == "bench"  # the bench's mean is kept
    assert (truth["policies"], truth["scored_policies"]) == (33, 34)
    assert truth["hypervolume"] == bench_only["hypervolume"] and truth["front"] == bench_only["front"]
    assert "share-last-3" in [p["policy"] for p in truth["front_all_scored"]]  # loss 1.0 beats every bench policy
    assert truth["hypervolume_all_scored"] > truth["hypervolume"]
    specs = {name: p["policy"] for name, p in BENCH["policies"].items()}
    chosen = [specs[p["policy"]] for p in truth["front"]] + [get_preset("share-last-3", "tiny").to_dict()]
    result = judge("s", chosen, None, known, truth)  # the bench front and a policy beyond it
    assert result["missing"] == [] and result["hypervolume_ratio"] > 1.0
    assert result["hypervolume_ratio_all_scored"] == pytest.approx(1.0)
    # a dominated extra policy changes nothing of the front
    worse, _ = scored_points(TABLE, {"extra.json": _scores_table(4.0)})
    assert true_front(TABLE, worse)["hypervolume_all_scored"] == pytest.approx(bench_only["hypervolume"])


def test_fronts_can_be_scored_by_the_seeds_a_study_did_not_train() -> None:
    from nas.bench.front import judge, scored_points, true_front

    known, _ = scored_points(TABLE, {"extra.json": _scores_table(1.0)}, seeds=[1])
    seed_1 = {n: next(r["val_loss"] for r in p["runs"] if r["seed"] == 1) for n, p in BENCH["policies"].items()}
    by_name = {p["policy"]: p for p in known.values()}
    assert all(by_name[n]["val_loss"] == seed_1[n] for n in BENCH["policies"])  # msclip: the bench's seed 1, not the extra table's
    assert by_name["share-last-3"]["val_loss"] == seed_1["msclip"]  # the extra table's seed-1 run (a copy of msclip's), not its mean 1.0
    truth = true_front(TABLE, known)
    values = np.array([[seed_1[n], p["params"]] for n, p in BENCH["policies"].items()])
    assert truth["hypervolume"] == pytest.approx(hypervolume(values, (truth["reference_point"]["val_loss"], truth["reference_point"]["params"])))
    assert truth["one_seed_fronts"] == true_front(TABLE)["one_seed_fronts"]  # the noise ceiling is by every seed
    assert truth["scores_run_seconds"] == pytest.approx(np.mean([r["train_seconds"] for r in BENCH["policies"]["msclip"]["runs"]]))
    result = judge("s", [BENCH["policies"]["msclip"]["policy"]], 60.0, known, truth)
    assert result["compute_scores_runs"] == pytest.approx(60.0 / truth["scores_run_seconds"])
    with pytest.raises(ValueError, match="msclip-s has no run of seed 7 .*choose --seeds"):
        scored_points(BenchRecord.from_json({**BENCH, "policies": {"msclip-s": BENCH["policies"]["msclip-s"]}}), seeds=[7])


def test_a_scores_table_trained_another_way_is_refused() -> None:
    from nas.bench.front import scored_points

    with pytest.raises(ValueError, match="extra.json: not built with the bench's recipe \\(seeds differ\\)"):
        scored_points(TABLE, {"extra.json": _scores_table(1.0, seeds=(0, 2))})


def _front_record(specs: list[dict], compute_seconds: float) -> ParetoRecord:
    """A study's front of the policies `specs` (one trial each, equal objectives)."""
    trials = [ParetoTrial(i, spec["name"], None, {LOSS: 3.0, "params": 1.0}, spec) for i, spec in enumerate(specs)]
    return ParetoRecord("s", [Objective(LOSS, "minimize"), Objective("params", "minimize")], None, None, compute_seconds, None, len(specs),
                        trials, [], {}, [])


def test_bench_front_writes_the_unscored_choices_as_policy_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nas.cli.app import app
    from nas.bench.front import spec_key

    chosen = [get_preset("share-last-3", "tiny").to_dict(), BENCH["policies"]["msclip"]["policy"]]
    record = tmp_path / "pareto.json"
    record.write_text(json.dumps(_front_record(chosen, 266.0).to_json()))
    bench = Path(__file__).resolve().parents[1] / "experiments" / "results" / "sharebench-tiny.json"
    out = CliRunner().invoke(app, ["bench", "front", str(bench), "--out", str(tmp_path / "fronts.json"),
                                   "--judge", f"s={record}", "--write-missing", str(tmp_path / "missing")])
    assert out.exit_code == 0, out.output
    written = sorted((tmp_path / "missing").iterdir())
    assert [p.name for p in written] == [f"share-last-3-{spec_key(chosen[0])[:8]}.json"]
    assert SharingPolicy.from_json(written[0].read_text()) == get_preset("share-last-3", "tiny")
    result = json.loads((tmp_path / "fronts.json").read_text())
    assert result["searches"][0]["missing"] == ["share-last-3"] and result["searches"][0]["compute_seconds"] == 266.0


def test_an_optuna_front_cut_at_a_compute_holds_the_trials_finished_within_it() -> None:
    record = ParetoRecord.load(Path(__file__).resolve().parents[1] / "experiments" / "results" / "pareto-tiny.json")
    full, seconds = record.front()
    assert [s["name"] for s in full] == [p.policy for p in record.pareto] and seconds == record.compute_seconds
    first, seconds = record.front(460.0)  # trial 0 (msclip) finished at 451.81 s, trial 1 at 1006.18 s
    assert [s["name"] for s in first] == ["msclip"] and seconds == 451.81
    two, seconds = record.front(1006.18)  # msclip and clip: neither dominates the other
    assert sorted(s["name"] for s in two) == ["clip", "msclip"] and seconds == 1006.18
    with pytest.raises(ValueError, match="no trial of the study had finished within 100 s"):
        record.front(100.0)
    with pytest.raises(ValueError, match="cannot be cut"):
        SweepRecord("run", "inherited", [], [], None, None, None, 1.0).front(100.0)


def test_a_sweep_is_told_how_its_inherited_scores_rank_against_the_standalone_ones() -> None:
    from nas.bench.front import bench_points, inherited_agreement

    names = ["share-last-2", "share-last-6", "share-last-10"]
    standalone = [BENCH["policies"][n]["mean"]["val_loss"] for n in names]
    order = sorted(range(3), key=lambda i: standalone[i])  # inherited scores in the reverse order
    inherited = {names[i]: 3.0 - rank for rank, i in enumerate(order)}
    written = SweepRecord("run", "inherited", [], [SweepPolicy(n, BENCH["policies"][n]["params"], inherited[n], True, BENCH["policies"][n]["policy"])
                                                   for n in names], {"arch_val_loss": 4.0, "params": 1e6}, 1.0, None, 1.0).to_json()
    assert written["schema"] == "sharenas/sweep/v2" and "arch_val_loss" in written["policies"][0]
    v1 = json.loads(json.dumps(written).replace('"arch_val_loss"', '"val_loss"')) | {"schema": "sharenas/sweep/v1"}  # v1: the name before v2
    for data in (written, v1):
        record = SweepRecord.from_json(data)
        assert record.reference_point == {"arch_val_loss": 4.0, "params": 1e6}
        agreement = inherited_agreement(record, bench_points(TABLE))
        assert agreement["policies"] == 3 and agreement["kendall"] == pytest.approx(-1.0) and agreement["spearman"] == pytest.approx(-1.0)
    assert inherited_agreement(_front_record([], 1.0), bench_points(TABLE)) is None
