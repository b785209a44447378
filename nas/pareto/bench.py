"""Fronts judged against the ground truth: the bench's own front (the standalone mean held-out loss
against parameters of every bench policy) and a search's front re-scored by the standalone scores
of the policies it chose. A chosen policy the bench does not hold has no standalone score: it is
listed as missing and the search's ratio is left out until it is trained standalone.

Reference point: the bench's chance loss (ln of the held-out batch) and twice the parameters of the
all-specific `clip-t768`, both fixed before any search.
"""
from __future__ import annotations

import hashlib
import json
from statistics import mean
from typing import Any

import numpy as np
import yaml

from nas.pareto.front import hypervolume, pareto_mask
from nas.pareto.objectives import default_reference

SCHEMA = "sharenas/bench-front/v1"


def spec_key(spec: dict[str, Any]) -> str:
    """A policy's identity without its name (equal keys train the same model)."""
    data = {k: v for k, v in spec.items() if k != "name"}
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def reference_point(table: dict[str, Any]) -> tuple[float, float]:
    size = yaml.safe_load(table["config"])["space"]["size"]  # the bench config, as YAML text
    return float(table["chance"]["val_loss"]), default_reference(size, ["params"])["params"]


def bench_points(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per bench policy (by key): name, params, mean loss, mean seconds of one standalone run."""
    return {
        spec_key(p["policy"]): {"policy": name, "params": int(p["params"]), "val_loss": float(p["mean"]["val_loss"]),
                                "run_seconds": mean(float(r["train_seconds"]) for r in p["runs"])}
        for name, p in table["policies"].items()
    }


def true_front(table: dict[str, Any]) -> dict[str, Any]:
    ref = reference_point(table)
    points = list(bench_points(table).values())
    values = np.array([[p["val_loss"], p["params"]] for p in points])
    mask = pareto_mask(values)
    return {
        "reference_point": {"val_loss": ref[0], "params": ref[1]},
        "hypervolume": hypervolume(values, ref),
        "front": sorted(({k: p[k] for k in ("policy", "params", "val_loss")} for p, m in zip(points, mask) if m), key=lambda p: p["params"]),
        "policies": len(points),
        "standalone_run_seconds": mean(p["run_seconds"] for p in points),
    }


def judge(name: str, chosen: list[dict[str, Any]], compute_seconds: float | None, table: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """`chosen`: the policy specs a search put on its front, scored here by the bench's standalone scores."""
    known = bench_points(table)
    found = [known[spec_key(spec)] for spec in chosen if spec_key(spec) in known]
    missing = [spec.get("name", "?") for spec in chosen if spec_key(spec) not in known]
    ref = truth["reference_point"]
    volume = hypervolume(np.array([[p["val_loss"], p["params"]] for p in found]), (ref["val_loss"], ref["params"])) if found else 0.0
    unit = truth["standalone_run_seconds"]
    return {
        "search": name, "chosen": len(chosen), "in_bench": [p["policy"] for p in found], "missing": missing,
        "hypervolume_ratio": None if missing else volume / truth["hypervolume"],
        "hypervolume_ratio_of_bench_policies": volume / truth["hypervolume"],
        "compute_seconds": compute_seconds,
        "compute_standalone_runs": None if compute_seconds is None else compute_seconds / unit,
    }


def search_front(record: dict[str, Any]) -> tuple[list[dict[str, Any]], float | None]:
    """The chosen policies and the compute of a `pareto.json` (Optuna) or `sweep.json` (supernet)."""
    if record.get("schema") == "sharenas/sweep/v1":
        seconds = (record.get("search_seconds") or 0.0) + record["sweep_seconds"]
        return [p["spec"] for p in record["policies"] if p["on_front"]], seconds
    if "pareto" in record:
        return [p["spec"] for p in record["pareto"] if p.get("spec")], record.get("compute_seconds")
    raise ValueError("not a pareto.json or sweep.json")


def to_markdown(result: dict[str, Any], command: str) -> str:
    t = result["truth"]
    ref = t["reference_point"]
    lines = [f"## Fronts against the ShareBench ground truth ({t['policies']} policies)", "", "```", command, "```", "",
             f"True front: hypervolume {t['hypervolume']:,.1f} against the reference point (held-out loss {ref['val_loss']:.4f} = chance, "
             f"{ref['params']:,.0f} parameters = 2 x clip-t768); one standalone run costs {t['standalone_run_seconds']:,.1f} s on average.", "",
             "| policy | params | held-out loss |", "|:--|--:|--:|"]
    lines += [f"| {p['policy']} | {p['params']:,} | {p['val_loss']:.4f} |" for p in t["front"]]
    if result["searches"]:
        lines += ["", "| search | front size | in the bench | missing (no standalone score) | HV ratio | compute (s) | compute (standalone runs) |",
                  "|:--|--:|--:|:--|--:|--:|--:|"]
        for s in result["searches"]:
            ratio = "n/a (missing policies)" if s["hypervolume_ratio"] is None else f"{s['hypervolume_ratio']:.3f}"
            comp = "" if s["compute_seconds"] is None else f"{s['compute_seconds']:,.0f}"
            runs = "" if s["compute_standalone_runs"] is None else f"{s['compute_standalone_runs']:.2f}"
            lines.append(f"| {s['search']} | {s['chosen']} | {len(s['in_bench'])} | {', '.join(s['missing']) or '-'} | {ratio} | {comp} | {runs} |")
    return "\n".join(lines) + "\n"
