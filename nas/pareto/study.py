"""The Pareto front of a multi-objective Optuna study (its own driver's or Ray Tune's): which
completed trials are on it, whether each hand-designed baseline is dominated and by which trial, and
the hypervolume against the study's fixed reference point, in total and as trials accumulate compute.

Trials a scheduler stopped early and trials that reused another trial's result are left out: the
first did not finish training, the second repeat a point already counted.
"""
from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas.pareto.front import dominated_by, hypervolume, pareto_mask, to_minimization
from nas.pareto.record import HistoryPoint, Objective, ParetoRecord, ParetoTrial, Verdict

REFERENCE_ATTR = "pareto_reference_point"
BASELINES = ("msclip", "clip", "msclip-s")


def _points(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get("stopped_early") and t.user_attrs.get("duplicate_of") is None]


def objective_names(study: optuna.Study) -> list[str]:
    return study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]


def _directions(study: optuna.Study) -> list[str]:
    return [d.name.lower() for d in study.directions]


def _reference(study: optuna.Study, names: list[str]) -> list[float] | None:
    given = study.user_attrs.get(REFERENCE_ATTR) or {}
    if not all(n in given for n in names):
        return None
    return [float(given[n]) for n in names]


def front_hypervolume(values: list[list[float]], directions: list[str], reference: list[float] | None) -> float | None:
    if reference is None:
        return None
    return hypervolume(to_minimization(values, directions), to_minimization([reference], directions)[0]) if values else 0.0


def pareto_results(study: optuna.Study) -> ParetoRecord:
    """The front of a multi-objective study (its `pareto.json`)."""
    names, directions = objective_names(study), _directions(study)
    trials = _points(study)
    reference = _reference(study, names)
    values = [list(t.values) for t in trials]
    minimized = to_minimization(values, directions) if trials else np.zeros((0, len(names)))
    on_front = pareto_mask(minimized) if trials else np.zeros(0, dtype=bool)

    def entry(t: FrozenTrial) -> ParetoTrial:
        return ParetoTrial(t.number, t.user_attrs.get("policy_name", "?"), t.user_attrs.get("baseline"), dict(zip(names, t.values)),
                           t.user_attrs.get("policy"))

    baselines: dict[str, Verdict] = {}
    for i, t in enumerate(trials):
        name = t.user_attrs.get("baseline")
        if name:
            dom = dominated_by(minimized[i], minimized, exclude=i)
            baselines[name] = Verdict(t.number, dom.dominated, None if dom.by is None else trials[dom.by].number)
    for name in BASELINES:
        baselines.setdefault(name, Verdict(None, None, None))
    history, spent = [], 0.0
    for k, t in enumerate(sorted(trials, key=lambda t: t.number)):
        spent += float(t.user_attrs.get("seconds") or 0.0)
        done = [list(u.values) for u in sorted(trials, key=lambda u: u.number)[: k + 1]]
        history.append(HistoryPoint(t.number, round(spent, 2), front_hypervolume(done, directions, reference)))
    volume = front_hypervolume(values, directions, reference)
    latency = next((t.user_attrs["latency"] for t in trials if "latency" in t.user_attrs), None)
    return ParetoRecord(
        study.study_name, [Objective(n, d) for n, d in zip(names, directions)],
        None if reference is None else dict(zip(names, reference)), volume, round(spent, 2),
        None if volume is None or spent <= 0 else volume / (spent / 3600.0), len(trials),
        [entry(t) for t, keep in zip(trials, on_front) if keep], [entry(t) for t, keep in zip(trials, on_front) if not keep],
        baselines, history, None if latency is None else {k: latency[k] for k in ("batch", "device", "precision", "steps", "warmup")},
    )


def format_value(name: str, value: float | None) -> str:
    """Thousands separators for counts, 4 decimals for losses and seconds, 2 for the rest."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if name in ("params", "flops", "params_total") or name.endswith("params"):
        return f"{value:,.0f}"
    if name.endswith("loss") or name == "latency":
        return f"{value:,.4f}"
    return f"{value:,.2f}"


def _verdict(name: str, b: Verdict) -> str:
    if b.trial is None:
        return f"- `{name}`: not in the study"
    if b.dominated:
        return f"- `{name}` (trial {b.trial}): dominated by trial {b.by}"
    return f"- `{name}` (trial {b.trial}): on the front"


def to_markdown(results: ParetoRecord, command: str | None = None) -> str:
    names = [o.name for o in results.objectives]
    heading = ", ".join(f"{o.name} ({o.direction})" for o in results.objectives)
    lines = [f"## Pareto front of {results.study}: {heading}", ""]
    if command:
        lines += ["```", command, "```", ""]
    ref = results.reference_point
    if results.hypervolume is None:
        lines.append("Hypervolume: not computed (set `objective.reference_point` for every objective).")
    else:
        point = ", ".join(f"{n} = {format_value(n, ref[n])}" for n in names)
        lines.append(f"Hypervolume {results.hypervolume:.6g} against the fixed reference point ({point}), "
                     f"{results.trials} trials, {results.compute_seconds:,.0f} s of trial compute.")
    if results.latency:
        lat = results.latency
        lines.append(f"Latency: median of {lat['steps']} timed forward steps (after {lat['warmup']} warm-up) of batch "
                     f"{lat['batch']} at {lat['precision']} on {lat['device']}.")
    lines += ["", "Baselines:", ""] + [_verdict(n, b) for n, b in results.baselines.items()] + [""]
    frame = pd.DataFrame([{"trial": p.trial, "policy": p.policy, "baseline": p.baseline or "",
                           **{n: format_value(n, p.objectives[n]) for n in names}} for p in results.pareto],
                         columns=["trial", "policy", "baseline", *names])
    lines += ["Pareto set:", "", frame.to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(lines)
