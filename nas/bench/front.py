"""Fronts judged against the ground truth: the bench's own front (the standalone mean held-out loss
against parameters of every bench policy) and a search's front re-scored by the standalone scores
of the policies it chose. The scores are the bench's, plus those of further tables built with the
bench's own recipe (e.g. the policies searches chose that the bench lacks), so a search can pass the
bench's front (a ratio above 1); beside it, the ratio to the front of every scored policy together,
the usual stand-in for an unknown front (the union of every approximation). A chosen policy no table
holds has no standalone score: it is listed as missing and the search's ratios are left out until it
is trained standalone.

Reference point: the bench's chance loss (ln of the held-out batch) and twice the parameters of the
all-specific `clip-t768`, both fixed before any search.

Beside it, the noise ceiling: the ratio of the front one seed's runs of every bench policy pick. And the
scores can be restricted to some seeds, so that a study whose trials are the bench's own runs of one
seed (the same recipe and seed) is not judged by the very runs that chose its front.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from statistics import mean
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from trainer.compose import RECIPE, TRAINER_SECTIONS
from trainer.typed_config import to_dict

from nas.bench.record import BenchPolicy, BenchRecord
from nas.pareto.front import hypervolume, pareto_mask
from nas.pareto.objectives import default_reference
from nas.pareto.record import ParetoRecord
from nas.supernet.sweep_record import SweepRecord

SCHEMA = "sharenas/bench-front/v3"
RECIPE_KEYS = (RECIPE, *TRAINER_SECTIONS, "space", "seeds", "heldout", "score_every_epochs")
"""What a further scores table must share with the bench for its scores to stand beside the bench's."""


def spec_key(spec: dict[str, Any]) -> str:
    """A policy's identity without its name (equal keys train the same model)."""
    data = {k: v for k, v in spec.items() if k != "name"}
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def reference_point(table: BenchRecord) -> tuple[float, float]:
    size = table.bench_config().space.size
    chance = (table.chance or {}).get("val_loss")
    if chance is None:
        raise ValueError("the bench table records no chance level of the held-out loss (the reference point's loss); "
                         "recompute it with `sharenas bench show DIR --config CONFIG --json`")
    return float(chance), default_reference(size, ["params"])["params"]


def _loss(name: str, entry: BenchPolicy, seeds: Sequence[int] | None) -> float:
    if seeds is None:
        return float(entry.mean["val_loss"])
    runs = {r.seed: float(r.scores["val_loss"]) for r in entry.runs}
    if lacking := [s for s in seeds if s not in runs]:
        raise ValueError(f"{name} has no run of seed {', '.join(map(str, lacking))} (it has {', '.join(map(str, sorted(runs)))}); "
                         "choose --seeds among the seeds every table trained")
    return mean(runs[s] for s in seeds)


def bench_points(table: BenchRecord, source: str = "bench", seeds: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
    """Per policy of a table (by key): name, params, loss (the mean over all its seeds, or over `seeds`),
    mean seconds of one standalone run, source."""
    return {
        spec_key(p.policy): {"policy": name, "params": int(p.params), "val_loss": _loss(name, p, seeds),
                             "run_seconds": mean(float(r.train_seconds) for r in p.runs), "source": source}
        for name, p in table.policies.items()
    }


def _recipe(table: BenchRecord) -> dict[str, Any]:
    """The recipe keys of a table's bench config, defaults filled in (a table may predate a key)."""
    config = to_dict(table.bench_config())
    return {key: config[key] for key in RECIPE_KEYS}


def scored_points(table: BenchRecord, others: dict[str, BenchRecord] | None = None,
                  seeds: Sequence[int] | None = None) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The standalone scores of the bench and of `others` (source -> table, each built with the bench's
    recipe), over all seeds or only `seeds` (e.g. the seeds a study's trials did not train), and, for each
    policy both hold, the two means (the bench's is kept): how well a table trained apart reproduces the bench."""
    points = bench_points(table, seeds=seeds)
    recipe = _recipe(table)
    repeats = []
    for source, other in (others or {}).items():
        differ = [key for key, value in _recipe(other).items() if value != recipe[key]]
        if differ:
            raise ValueError(f"{source}: not built with the bench's recipe ({', '.join(differ)} differ); "
                             "copy the bench config and change only its policies")
        for key, point in bench_points(other, source, seeds).items():
            if key in points:
                repeats.append(_repeat(table.policies[points[key]["policy"]], other.policies[point["policy"]],
                                       points[key]["policy"], source))
            else:
                points[key] = point
    return points, repeats


def _repeat(bench: BenchPolicy, again: BenchPolicy, name: str, source: str) -> dict[str, Any]:
    """One policy in two tables, compared over the seeds both trained."""
    ours = {r.seed: float(r.scores["val_loss"]) for r in bench.runs}
    theirs = {r.seed: float(r.scores["val_loss"]) for r in again.runs}
    seeds = sorted(set(ours) & set(theirs))
    return {"policy": name, "source": source, "seeds": seeds,
            "bench": mean(ours[s] for s in seeds) if seeds else None, "again": mean(theirs[s] for s in seeds) if seeds else None,
            "max_seed_difference": max((abs(theirs[s] - ours[s]) for s in seeds), default=None),
            "bench_run_seconds": mean(float(r.train_seconds) for r in bench.runs),
            "again_run_seconds": mean(float(r.train_seconds) for r in again.runs)}


def _front(points: list[dict[str, Any]], ref: tuple[float, float]) -> tuple[float, list[dict[str, Any]]]:
    values = np.array([[p["val_loss"], p["params"]] for p in points])
    members = [{k: p[k] for k in ("policy", "params", "val_loss", "source")} for p, m in zip(points, pareto_mask(values)) if m]
    return hypervolume(values, ref), sorted(members, key=lambda p: p["params"])


def one_seed_fronts(table: BenchRecord, ref: tuple[float, float]) -> list[dict[str, Any]]:
    """The noise ceiling of a front: for each seed every bench policy trained, the front that one run of
    every policy (that seed) picks, judged by the bench's means like a search's (its own seed among them:
    a search whose trials are the bench's own seed-0 runs has the same advantage) and, independently, by
    the mean of the other seeds against their own front."""
    seeds = sorted(set.intersection(*({r.seed for r in p.runs} for p in table.policies.values())))
    params = np.array([float(p.params) for p in table.policies.values()])
    means = np.column_stack([[float(p.mean["val_loss"]) for p in table.policies.values()], params])
    by_seed = {s: np.array([float(p.run(s).scores["val_loss"]) for p in table.policies.values()])
               for s in seeds}
    out = []
    for seed in seeds:
        picked = pareto_mask(np.column_stack([by_seed[seed], params]))
        others = [s for s in seeds if s != seed]
        row = {"chosen_by_seed": seed, "front_size": int(picked.sum()),
               "hypervolume_ratio": hypervolume(means[picked], ref) / hypervolume(means, ref),
               "judged_by_seeds": others, "hypervolume_ratio_other_seeds": None}
        if others:
            other = np.column_stack([np.mean([by_seed[s] for s in others], axis=0), params])
            row["hypervolume_ratio_other_seeds"] = hypervolume(other[picked], ref) / hypervolume(other, ref)
        out.append(row)
    return out


def true_front(table: BenchRecord, points: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The bench's own front and its hypervolume, its noise ceiling (`one_seed_fronts`), and the front of
    every scored policy in `points` (default: the bench's alone); the compute unit is one standalone run
    of the bench."""
    ref = reference_point(table)
    scored = list((points or bench_points(table)).values())
    bench = [p for p in scored if p["source"] == "bench"]
    volume, front = _front(bench, ref)
    volume_all, front_all = _front(scored, ref)
    return {
        "reference_point": {"val_loss": ref[0], "params": ref[1]},
        "hypervolume": volume,
        "front": front,
        "policies": len(bench),
        "one_seed_fronts": one_seed_fronts(table, ref),
        "hypervolume_all_scored": volume_all,
        "front_all_scored": front_all,
        "scored_policies": len(scored),
        "standalone_run_seconds": mean(p["run_seconds"] for p in bench),
        "scores_run_seconds": mean(others) if (others := [p["run_seconds"] for p in scored if p["source"] != "bench"]) else None,
    }


def judge(name: str, chosen: list[dict[str, Any]], compute_seconds: float | None, known: dict[str, dict[str, Any]], truth: dict[str, Any]) -> dict[str, Any]:
    """`chosen`: the policy specs a search put on its front, scored here by the standalone scores `known`."""
    found = [known[spec_key(spec)] for spec in chosen if spec_key(spec) in known]
    missing = [spec.get("name", "?") for spec in unscored(chosen, known)]
    ref = truth["reference_point"]
    volume = hypervolume(np.array([[p["val_loss"], p["params"]] for p in found]), (ref["val_loss"], ref["params"])) if found else 0.0
    unit = truth["standalone_run_seconds"]
    return {
        "search": name, "chosen": len(chosen), "scored": [p["policy"] for p in found], "missing": missing,
        "hypervolume_ratio": None if missing else volume / truth["hypervolume"],
        "hypervolume_ratio_all_scored": None if missing else volume / truth["hypervolume_all_scored"],
        "hypervolume_ratio_of_scored_policies": volume / truth["hypervolume"],
        "compute_seconds": compute_seconds,
        "compute_standalone_runs": None if compute_seconds is None else compute_seconds / unit,
        "compute_scores_runs": None if compute_seconds is None or truth["scores_run_seconds"] is None else compute_seconds / truth["scores_run_seconds"],
    }


def unscored(chosen: list[dict[str, Any]], known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The chosen specs no table scores, each once."""
    seen: dict[str, dict[str, Any]] = {}
    for spec in chosen:
        seen.setdefault(spec_key(spec), spec)
    return [spec for key, spec in seen.items() if key not in known]


JUDGED: tuple[type[ParetoRecord], type[SweepRecord]] = (ParetoRecord, SweepRecord)
"""The fronts `--judge` takes: an Optuna study's `pareto.json` and a supernet's `sweep.json`; each
record's `front(seconds)` gives its chosen policies and their compute."""


def inherited_agreement(record: ParetoRecord | SweepRecord, known: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """How a sweep's inherited scores rank its derived policies against their standalone scores (the
    policies both score); None for an Optuna study, whose trials are standalone runs already."""
    if not isinstance(record, SweepRecord):
        return None
    pairs = [(p.arch_val_loss, known[spec_key(p.spec)]["val_loss"]) for p in record.policies if spec_key(p.spec) in known]
    if len(pairs) < 3:
        return {"policies": len(pairs), "kendall": None, "kendall_p": None, "spearman": None}
    inherited, standalone = zip(*pairs)
    tau = kendalltau(inherited, standalone)
    return {"policies": len(pairs), "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue),
            "spearman": float(spearmanr(inherited, standalone).statistic)}


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _front_rows(front: list[dict[str, Any]]) -> list[str]:
    return ["| policy | params | held-out loss | scored in |", "|:--|--:|--:|:--|"] + [
        f"| {p['policy']} | {p['params']:,} | {p['val_loss']:.4f} | {p['source']} |" for p in front]


def to_markdown(result: dict[str, Any], command: str) -> str:
    t = result["truth"]
    ref = t["reference_point"]
    seeds = result.get("seeds")
    lines = [f"## Fronts against the ShareBench ground truth ({t['policies']} policies)", "", "```", command, "```", "",
             *([f"Scored by the runs of seed {', '.join(map(str, seeds))} alone (the fronts' members, the bench's front and its hypervolume); "
                "the noise ceiling below by every seed.", ""] if seeds else []),
             f"True front: hypervolume {t['hypervolume']:,.1f} against the reference point (held-out loss {ref['val_loss']:.4f} = chance, "
             f"{ref['params']:,.0f} parameters = 2 x clip-t768); one standalone run of the bench costs {t['standalone_run_seconds']:,.1f} s on average.", ""]
    lines += _front_rows(t["front"])
    lines += ["", "Noise ceiling: the front one run of every bench policy picks (one seed's scores), judged like a search's by the bench's "
              "means (its own seed among them), and by the other seeds alone against their own front:", "",
              "| chosen by seed | front size | HV ratio (bench means) | judged by seeds | HV ratio (those seeds) |", "|--:|--:|--:|:--|--:|"]
    lines += [f"| {r['chosen_by_seed']} | {r['front_size']} | {r['hypervolume_ratio']:.3f} | {', '.join(map(str, r['judged_by_seeds'])) or '-'} | "
              f"{_num(r['hypervolume_ratio_other_seeds'], '.3f')} |" for r in t.get("one_seed_fronts", [])]
    if t.get("scores_run_seconds") is not None:
        lines += ["", f"One run of the further scores tables costs {t['scores_run_seconds']:,.1f} s on average (the compute unit of the last column below)."]
    if t["scored_policies"] > t["policies"]:
        lines += ["", f"Every scored policy ({t['scored_policies']}: the bench's and those trained standalone with its recipe): "
                  f"hypervolume {t['hypervolume_all_scored']:,.1f}.", ""] + _front_rows(t["front_all_scored"])
    if result.get("repeats"):
        lines += ["", "Policies trained again beside the searches' (same recipe; the bench's mean is kept), over the seeds both trained, "
                  "and the seconds of one run in each (wall time: the load of the machine differs):", "",
                  "| policy | scored in | seeds | bench loss | again | largest seed difference | run (s), bench | run (s), again |",
                  "|:--|:--|:--|--:|--:|--:|--:|--:|"]
        lines += [f"| {r['policy']} | {r['source']} | {', '.join(map(str, r['seeds']))} | {_num(r['bench'], '.4f')} | {_num(r['again'], '.4f')} | "
                  f"{_num(r['max_seed_difference'], '.4f')} | {r['bench_run_seconds']:,.1f} | {r['again_run_seconds']:,.1f} |" for r in result["repeats"]]
    if result["searches"]:
        lines += ["", "| search | front size | scored | missing (no standalone score) | HV ratio | HV ratio, all scored | compute (s) | compute (bench runs) | compute (scores-table runs) |",
                  "|:--|--:|--:|:--|--:|--:|--:|--:|--:|"]
        for s in result["searches"]:
            ratio = "n/a (missing policies)" if s["hypervolume_ratio"] is None else f"{s['hypervolume_ratio']:.3f}"
            ratio_all = "n/a" if s["hypervolume_ratio_all_scored"] is None else f"{s['hypervolume_ratio_all_scored']:.3f}"
            comp = "" if s["compute_seconds"] is None else f"{s['compute_seconds']:,.0f}"
            runs = "" if s["compute_standalone_runs"] is None else f"{s['compute_standalone_runs']:.2f}"
            scores_runs = "" if s.get("compute_scores_runs") is None else f"{s['compute_scores_runs']:.2f}"
            lines.append(f"| {s['search']} | {s['chosen']} | {len(s['scored'])} | {', '.join(s['missing']) or '-'} | {ratio} | {ratio_all} | {comp} | {runs} | {scores_runs} |")
        for s in result["searches"]:
            agree = s.get("inherited_vs_standalone")
            if agree and agree["kendall"] is not None:
                lines += ["", f"{s['search']}: its inherited scores rank its {agree['policies']} derived policies against their standalone scores at "
                          f"Kendall tau {agree['kendall']:.3f} (p {agree['kendall_p']:.2f}), Spearman {agree['spearman']:.3f}."]
    return "\n".join(lines) + "\n"
