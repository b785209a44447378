"""`sharenas search per-compute`: every strategy's anytime regret against a bench, per budget in
standalone runs of the bench's recipe.

The bench's policies in the supernet's space are split at random into a choice half (where any
setting of a strategy is chosen: here, the supernet's setting) and a report half (the search space of
every curve). A strategy observes the bench's `observe_seed` runs (table look-ups, charged their
cost) or runs what the table cannot give (`compute_runs.py`); the policy it returns is judged by the
bench's `judge_seeds` runs alone, so the noise it chose on does not flatter it. Regret: the returned
policy's judged held-out loss minus the best judged loss of the report half (0 is the best there is);
`vs_reference`: minus the reference's (`msclip`), paired by judge seed. Each curve gives the mean,
std, min and max over search seeds at every budget. The strategies are in `anytime.py`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.typed_config import ConfigError, load_config, to_dict

from nas.bench.record import BenchPolicy
from nas.ranking.anytime import Trace, halves, incumbent_at, proxy_trace, random_trace, tpe_trace
from nas.ranking.compute_runs import Measured, SupernetRecord, relative_path, space_policies
from nas.ranking.per_compute_config import PerComputeConfig
from nas.ranking.statistics import kendall_tau

SCHEMA = "sharenas/per-compute/v1"


@dataclass
class CurvePoint:
    """One strategy at one budget, over its search seeds."""

    budget: float
    """Compute, in standalone runs."""
    returned: list[str | None]
    """The policy returned per search seed (None: the strategy has nothing yet at this budget)."""
    regret: list[float | None]
    """Judged loss minus the report half's best, per search seed."""
    vs_reference: list[float | None]
    """Judged loss minus the reference's, per search seed (negative: better than the reference)."""
    regret_mean: float | None
    regret_std: float | None
    """Std over search seeds (ddof 1; None with fewer than 2)."""
    regret_min: float | None
    regret_max: float | None
    vs_reference_mean: float | None
    vs_reference_std: float | None


@dataclass
class StrategyCurve:
    name: str
    """The strategy."""
    how: str
    """What it runs and observes."""
    seeds: int
    """Search seeds."""
    points: list[CurvePoint]


@dataclass
class SupernetRow:
    """One Gumbel search: its cost and its rank agreement on each half."""

    setting: str
    budget: float
    seed: int
    steps: int
    cost_runs: float
    """Search plus scoring the report half, in standalone runs (measured)."""
    kendall_choose: float
    """Kendall tau of inherited loss against the bench's mean loss, on the choice half."""
    kendall_report: float
    """The same on the report half, against the judge seeds."""
    pick: str
    """Its best report-half policy (lowest inherited loss)."""


def _stats(values: list[float | None]) -> tuple[float | None, float | None, float | None, float | None]:
    got = np.array([v for v in values if v is not None], dtype=float)
    if got.size == 0:
        return None, None, None, None
    return float(got.mean()), float(got.std(ddof=1)) if got.size > 1 else None, float(got.min()), float(got.max())


def curve(name: str, how: str, traces: list[Trace], budgets: list[float], judge: dict[str, float], best: float, reference: str) -> StrategyCurve:
    """The strategy's curve from one trace per search seed."""
    points = []
    for budget in budgets:
        returned = [incumbent_at(t, budget) for t in traces]
        regret = [None if p is None else judge[p] - best for p in returned]
        versus = [None if p is None else judge[p] - judge[reference] for p in returned]
        mean, std, low, high = _stats(regret)
        vmean, vstd, _, _ = _stats(versus)
        points.append(CurvePoint(budget, returned, regret, versus, mean, std, low, high, vmean, vstd))
    return StrategyCurve(name, how, len(traces), points)


def _seed_loss(entry: BenchPolicy, seeds: list[int], what: str) -> float:
    runs = {r.seed: r.scores for r in entry.runs}
    missing = [s for s in seeds if s not in runs]
    if missing:
        raise ConfigError(f"{what}: a policy lacks a run of seed {missing[0]}")
    return float(np.mean([runs[s]["val_loss"] for s in seeds]))


def supernet_traces(records: list[SupernetRecord], report: list[str], standalone: float) -> dict[tuple[str, int], tuple[Trace, list[float]]]:
    """(setting, seed) -> the trace of its searches (each search: its measured cost, its best report-half
    policy), in order of cost."""
    out: dict[tuple[str, int], list[tuple[float, str]]] = {}
    for r in records:
        cost = (r.search_cpu_seconds + r.score_cpu_seconds_per_policy * len(report)) / standalone
        out.setdefault((r.setting, r.seed), []).append((cost, min(report, key=lambda n: r.inherited[n])))
    return {k: sorted(v) for k, v in out.items()}


def per_compute(config: str | Path, measured: Measured, overrides: list[str] = ()) -> dict[str, Any]:
    """The study's result from the bench tables and what `compute_runs.measure` measured."""
    from nas.ranking.rank_check import read_bench_table
    from nas.supernet.config import GumbelConfig

    config = Path(config)
    cfg = load_config(config, PerComputeConfig, list(overrides))
    table = read_bench_table(relative_path(config, cfg.bench))
    short = read_bench_table(relative_path(config, cfg.short)).policies
    policies = space_policies(table, load_config(relative_path(config, cfg.search), GumbelConfig))
    if cfg.reference not in policies:
        raise ConfigError(f"reference: {cfg.reference} is not a bench policy in the supernet's space")
    choose, report = halves(list(policies), cfg.split_seed, cfg.reference)
    entries = table.policies
    judge = {n: _seed_loss(entries[n], cfg.judge_seeds, "judge_seeds") for n in policies}
    observed = {n: _seed_loss(entries[n], [cfg.observe_seed], "observe_seed") for n in policies}
    curves = {n: [p["val_loss"] for p in next(r for r in entries[n].runs if r.seed == cfg.observe_seed).curve] for n in policies}
    full_steps = next(r.steps for r in entries[cfg.reference].runs)
    short_cost = next(r.steps for r in short[cfg.reference].runs) / full_steps
    short_loss = {n: _seed_loss(short[n], [cfg.observe_seed], "short") for n in report}
    best = min(judge[n] for n in report)
    top = max(cfg.budgets)
    unit = measured.standalone_cpu_seconds
    if unit is None:
        raise ConfigError("the study has not timed its standalone run yet; run it without --analyse-only first")

    def add(name: str, how: str, traces: list[Trace]) -> None:
        strategies.append(curve(name, how, traces, cfg.budgets, judge, best, cfg.reference))

    strategies: list[StrategyCurve] = []
    seeds = cfg.search_seeds
    add("random", "random search over full runs (1 run each; the observed seed's final held-out loss)",
        [random_trace(report, observed, 1.0, s) for s in seeds])
    add("random-short", f"random search over short runs (own schedule; {short_cost:.2f} runs each)",
        [random_trace(report, short_loss, short_cost, s) for s in seeds])
    add("tpe-hyperband", f"Optuna TPE, Hyperband pruner (min {cfg.hyperband.min_epochs} epoch, eta {cfg.hyperband.reduction_factor}) on per-epoch losses",
        [tpe_trace({n: policies[n] for n in report}, {n: curves[n] for n in report}, s, top, cfg.hyperband) for s in seeds])
    add("tpe-short", f"Optuna TPE over short runs (own schedule; {short_cost:.2f} runs each), no pruning",
        [tpe_trace({n: policies[n] for n in report}, {n: [short_loss[n]] for n in report}, s, top, curve_cost=short_cost) for s in seeds])
    add("params", "most parameters (no training; cost 0)", [proxy_trace(report, {n: float(entries[n].params) for n in report}, 0.0)])
    from nas.bench.policies import specific_sublayers

    add("specific_sublayers", "most modality-specific sublayers (no training; cost 0)",
        [proxy_trace(report, {n: float(specific_sublayers(policies[n])) for n in report}, 0.0)])
    if measured.conflict_cpu_seconds is not None:
        add("conflict", "gradient-conflict proxy (one epoch of share-all, then cosines)",
            [proxy_trace(report, measured.conflict, measured.conflict_cpu_seconds / unit)])
    for proxy in ("grad_norm", "snip"):
        traces = [proxy_trace(report, {n: z[n][proxy] for n in report}, sum(z[n]["cpu_seconds"] for n in report) / unit)
                  for z in measured.zero_cost.values()]
        if traces:
            add(proxy, f"zero-cost proxy {proxy} at initialization (one batch; one seed per search seed)", traces)
    supernet = supernet_traces(measured.supernet, report, unit)
    rows = [SupernetRow(r.setting, r.budget, r.seed, r.steps, (r.search_cpu_seconds + r.score_cpu_seconds_per_policy * len(report)) / unit,
                        kendall_tau([-entries[n].mean["val_loss"] for n in choose], [-r.inherited[n] for n in choose]),
                        kendall_tau([-judge[n] for n in report], [-r.inherited[n] for n in report]),
                        min(report, key=lambda n: r.inherited[n])) for r in measured.supernet]
    settings = sorted({r.setting for r in rows})
    for setting in settings:
        add(f"supernet-{setting}", f"Gumbel supernet ({setting}), training length sized to the budget; its best report-half policy by inherited loss",
            [t for (s, _), t in supernet.items() if s == setting])
    # compared on the (budget, seed) searches every setting has
    common = set.intersection(*({(r.budget, r.seed) for r in rows if r.setting == s} for s in settings)) if settings else set()
    chosen = max(settings, key=lambda s: np.mean([r.kendall_choose for r in rows if r.setting == s and (r.budget, r.seed) in common])) if common else None
    if chosen is not None:
        add("supernet-chosen", f"the supernet setting with the higher mean Kendall tau on the choice half, over the searches every setting has ({chosen})",
            [t for (s, _), t in supernet.items() if s == chosen])
    return {
        "schema": SCHEMA, "bench": str(relative_path(config, cfg.bench)), "config": to_dict(cfg),
        "unit": {"standalone_cpu_seconds": unit, "standalone_steps": measured.standalone_steps,
                 "what": f"one standalone run of the bench's recipe ({cfg.reference}, seed {cfg.observe_seed}), CPU seconds of one thread"},
        "choose_half": choose, "report_half": report, "best": min(report, key=lambda n: judge[n]), "best_judged_loss": best,
        "reference_regret": judge[cfg.reference] - best, "judged_loss": {n: judge[n] for n in report},
        "supernet_setting_chosen": chosen, "supernet_runs": [asdict(r) for r in rows],
        "conflict_cost_runs": None if measured.conflict_cpu_seconds is None else measured.conflict_cpu_seconds / unit,
        "strategies": [asdict(s) for s in strategies],
    }
