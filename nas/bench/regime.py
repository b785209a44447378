"""The regime map: in which cell (recipe: data, width, augmentation) and at which training length do
sharing choices inside the transformer separate by more than seed noise?

Each cell is a bench directory whose entries were trained with `lengths` (one WSD run per policy and
seed with a cool-down branch per shorter length). At every length of every cell the map gives, for the
bench's ranking metric over the policies that differ only inside the transformer (early
specialization and the parallel branch off; those with either are positive controls, reported apart):
- the mean of the policy means (the length study's curve: where it stops rising is the plateau);
- the std of the policy means (between-policy) beside the pooled seed std: seed noise alone makes the
  former about `pooled / sqrt(seeds)`, so a ratio between / pooled well above that says the policies
  differ; `range_in_pooled_std` is max - min of the means in pooled seed stds;
- what seed noise alone would give: the range of the means that noise exceeds 5% of the time (Tukey's
  honestly significant difference: the studentized range's 95% quantile for that many policies and the
  pooled std's degrees of freedom, over sqrt(seeds)), and the one-way ANOVA p-value of the policies.
  The range of k noisy means grows with k (about 2.4 seed stds for 13 policies of 2 seeds), so a fixed
  threshold alone would call a large cell of identical policies separated;
- the seed-to-seed Kendall tau of those policies with its bootstrap CI (the noise ceiling they allow);
- how the policy means at this length rank against those at the cell's longest length (`vs_longest`,
  Kendall tau with its CI): whether a short length ranks what the long schedule ranks, or only how fast
  the policies learn;
- every control's difference from the reference, paired by seed;
- what it cost: CPU-hours of the cell as trained, and of standalone runs of that length (the run's
  seconds prorated by epochs; one trained run is uniform in cost per epoch). A run's seconds are its
  trainer's `train/seconds`, summed over the sessions it was resumed in; entries recorded before the
  trainer logged them count only the session that finished them.
The same holds for the best-epoch value of the metric (selected on the scored points, so optimistic).

A fractional design trains the trend cells (less data, more width, ...) on a subset of the first cell's
policies. The spread statistics grow with the number of policies, so each row also holds them over the
transformer-only policies every cell has (`common`): the trend across cells compares like with like.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from trainer.typed_config import load_config

from nas.bench.config import BenchConfig
from nas.bench.spread import finite, paired_differences, pooled_std
from nas.bench.record import LOWER_IS_BETTER
from nas.bench.table import at_length, best_of_curve, read_entries, record_value, seed_agreement
from nas.ranking.statistics import rank_agreement

REGIME_SCHEMA = "sharenas/regime/v1"
SEPARATES = 2.0
"""Policies separate in a cell when the range of their means exceeds this many pooled seed stds, and
also the range seed noise alone exceeds 5% of the time (`noise_range`)."""
FAMILYWISE = 0.05
"""The error rate of `noise_range` and of the ANOVA."""


def is_control(policy: dict[str, Any]) -> bool:
    """A policy with a modality-specific extra (early specialization or the parallel branch)."""
    return bool(policy.get("early_specialization")) or policy.get("parallel_branch") is not None


def _frame(records: list[dict[str, Any]], column: str, source: str) -> pd.DataFrame:
    rows = []
    for r in records:
        best = best_of_curve(r["curve"], column, source)
        rows.append({"policy": r["name"], "seed": r["seed"], "control": is_control(r["policy"]), "final": finite(record_value(r, source)),
                     "best": None if best is None else best["value"], "best_epoch": None if best is None else best["epoch"],
                     "seconds": r["train_seconds"]})
    return pd.DataFrame(rows)


@functools.lru_cache(maxsize=None)
def noise_range(policies: int, seeds: float, df: int | None) -> float | None:
    """The range of `policies` means of `seeds` runs each, in pooled seed stds with `df` degrees of
    freedom, that seed noise alone exceeds with probability `FAMILYWISE` (Tukey's HSD)."""
    if policies < 2 or not seeds or not df:
        return None
    return finite(stats.studentized_range.ppf(1 - FAMILYWISE, policies, df) / np.sqrt(seeds))


def anova_p(runs: pd.DataFrame, column: str) -> float | None:
    """The one-way ANOVA p-value of `column` grouped by policy (None with fewer than two policies or no
    within-policy degrees of freedom)."""
    groups = [g[column].to_numpy() for _, g in runs.groupby("policy")]
    if len(groups) < 2 or sum(len(g) - 1 for g in groups) < 1:
        return None
    return finite(stats.f_oneway(*groups).pvalue)


def separates(stats_row: dict[str, Any]) -> bool:
    """The range of the transformer-only policies' means exceeds both `SEPARATES` and `noise_range`."""
    spread, noise = stats_row["range_in_pooled_std"], stats_row["noise_range_in_pooled_std"]
    return spread is not None and noise is not None and spread > max(SEPARATES, noise)


def separation(runs: pd.DataFrame, value: str, column: str, reference: str, bootstrap: int) -> dict[str, Any]:
    """The spread statistics of `value` (final or best) over the transformer-only policies of `runs`,
    and the controls' paired differences from `reference` (see the module docstring)."""
    runs = runs.dropna(subset=[value])
    inside = runs[~runs["control"]].rename(columns={value: column})
    means = inside.groupby("policy")[column].mean()
    pooled = pooled_std(inside, column)
    between = float(means.std(ddof=1)) if len(means) >= 2 else None
    counts = inside.groupby("policy")["seed"].count()
    seeds = float(counts.mean()) if len(inside) else 0.0
    harmonic = float(len(counts) / (1 / counts).sum()) if len(inside) else 0.0
    ceiling = seed_agreement(inside, column, bootstrap=bootstrap)
    out: dict[str, Any] = {
        "policies": int(len(means)), "seeds_per_policy": seeds, "mean": finite(means.mean()) if len(means) else None,
        "between_std": finite(between), "pooled_std": pooled["std"], "pooled_df": pooled["df"],
        "between_over_pooled": finite(between / pooled["std"]) if between is not None and pooled["std"] else None,
        "noise_only_ratio": finite(1 / np.sqrt(seeds)) if seeds else None,
        "range_in_pooled_std": finite((means.max() - means.min()) / pooled["std"]) if pooled["std"] and len(means) >= 2 else None,
        "noise_range_in_pooled_std": noise_range(len(means), harmonic, pooled["df"]),
        "anova_p": anova_p(inside, column),
        "best_policy": (means.idxmin() if column in LOWER_IS_BETTER else means.idxmax()) if len(means) else None,
        "kendall": None if ceiling is None else ceiling["kendall"], "kendall_ci": None if ceiling is None else ceiling["kendall_ci"],
        "kendall_seeds": None if ceiling is None else ceiling["seeds"],
        "means": {name: finite(v) for name, v in means.items()},
    }
    all_runs = runs.rename(columns={value: column})
    if reference in set(all_runs["policy"]) and all_runs["policy"].nunique() > 1:
        diffs = paired_differences(all_runs, column, reference)
        controls = sorted(set(all_runs.loc[all_runs["control"], "policy"]))
        out["controls_vs_reference"] = {
            name: {"mean": finite(diffs.loc[name, "mean"]), "se": finite(diffs.loc[name, "se"]), "n": int(diffs.loc[name, "n"])}
            for name in controls if name in diffs.index
        }
        inside_diffs = diffs.loc[[n for n in diffs.index if n in means.index]]
        if len(inside_diffs):
            top = inside_diffs["mean"].abs().idxmax()
            out["largest_paired_vs_reference"] = {"policy": top, "mean": finite(inside_diffs.loc[top, "mean"]),
                                                  "se": finite(inside_diffs.loc[top, "se"]), "n": int(inside_diffs.loc[top, "n"])}
    return out


def _cell_records(bench_dir: Path) -> list[dict[str, Any]]:
    records = read_entries(bench_dir)
    if not records:
        raise ValueError(f"{bench_dir}: no finished entries yet; run `sharenas bench build` first")
    return records


def transformer_only(records: list[dict[str, Any]]) -> set[str]:
    """The names of the policies of `records` without early specialization or the parallel branch."""
    return {r["name"] for r in records if not is_control(r["policy"])}


def choosable(records: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The cells (name -> finished entries) the map chooses from: those with the most transformer-only
    policies, the full design rather than its fractional trend cells."""
    counts = {name: len(transformer_only(r)) for name, r in records.items()}
    return {name for name, count in counts.items() if count == max(counts.values())}


def cell_rows(name: str, bench_dir: Path, records: list[dict[str, Any]], bootstrap: int,
              common: set[str] | None = None) -> list[dict[str, Any]]:
    """One row per length of the cell at `bench_dir`, from its finished entries `records`; with `common`,
    each row's `common` holds the final-value statistics over those of its transformer-only policies."""
    cfg = load_config(bench_dir / "config.yaml", BenchConfig)
    column, source = cfg.ranking, cfg.metrics[cfg.ranking]
    longest = max(cfg.lengths) if cfg.lengths else None
    trained_hours = sum(r["train_seconds"] + sum(v["train_seconds"] for k, v in (r.get("lengths") or {}).items() if int(k) != longest)
                        + r.get("score_seconds", 0.0) for r in records) / 3600
    trunk_seconds = sum(r["train_seconds"] for r in records)
    rows = []
    for epochs in sorted(cfg.lengths) or [None]:
        view = records if epochs is None else [at_length(r, epochs) for r in records]
        runs = _frame(view, column, source)
        row = {
            "cell": name, "bench": cfg.name, "epochs": epochs, "metric": column, "runs": len(view),
            "standalone_cpu_hours": trunk_seconds / 3600 * (epochs / longest if epochs else 1.0),
            "cell_cpu_hours": trained_hours,
            "final": separation(runs, "final", column, cfg.reference, bootstrap),
            "best": separation(runs, "best", column, cfg.reference, bootstrap),
            "best_epoch_median": finite(runs["best_epoch"].median()) if runs["best_epoch"].notna().any() else None,
            **({"common": separation(runs[runs["policy"].isin(common) & ~runs["control"]], "final", column, cfg.reference, bootstrap)}
               if common is not None else {}),
            "runs_detail": [{k: (finite(v) if isinstance(v, float) else v) for k, v in row.items()} for row in runs.to_dict("records")],
        }
        rows.append(row)
    longest_means = rows[-1]["final"]["means"]
    for row in rows:
        row["vs_longest"] = _vs_longest(row["final"]["means"], longest_means, bootstrap)
    return rows


def _vs_longest(means: dict[str, float | None], longest: dict[str, float | None], bootstrap: int) -> dict[str, Any] | None:
    """Kendall tau (with its CI) and Spearman rho of `means` against `longest` over the policies both score."""
    names = [n for n, v in means.items() if v is not None and longest.get(n) is not None]
    if len(names) < 3:
        return None
    result = rank_agreement([means[n] for n in names], [longest[n] for n in names], samples=bootstrap)
    return {"policies": len(names), "kendall": result["kendall"], "kendall_ci": result["kendall_ci"], "spearman": result["spearman"]}


def regime_map(cells: dict[str, Path], bootstrap: int = 2000) -> dict[str, Any]:
    """The map over `cells` (name -> bench directory) and the chosen cell: among the (cell, length) rows
    whose transformer-only policies separate (`separates`), the one with the highest seed-to-seed
    Kendall tau; without any, the row with the highest tau, flagged as not separating. Only the cells with
    the most transformer-only policies are chosen from: a fractional design's trend cells (5 to 7 policies)
    give a tau whose CI spans most of [-1, 1], and the bench built in the chosen cell ranks all of them.
    Each row is judged over its own cell's policies; the `common` statistics are shown beside, not used
    to choose."""
    records = {name: _cell_records(Path(path)) for name, path in cells.items()}
    common = set.intersection(*(transformer_only(r) for r in records.values())) if len(cells) > 1 else None
    common = common or None  # cells with no policy in common have no trend to compare
    rows = [row for name, path in cells.items() for row in cell_rows(name, Path(path), records[name], bootstrap, common)]
    candidates = choosable(records)
    scored = [r for r in rows if r["final"]["kendall"] is not None and r["cell"] in candidates]
    separating = [r for r in scored if separates(r["final"])]
    pick = max(separating or scored, key=lambda r: r["final"]["kendall"]) if scored else None
    chosen = None
    if pick is not None:
        f = pick["final"]
        tau = _tau(f)
        noise = _f(f["noise_range_in_pooled_std"], 2)
        reason = (f"the transformer-only policies span {f['range_in_pooled_std']:.2f} pooled seed stds (> {SEPARATES} and > {noise}, the "
                  f"range seed noise alone exceeds {FAMILYWISE:.0%} of the time; ANOVA p {_f(f['anova_p'])}) with the highest seed-to-seed "
                  f"Kendall tau among such rows, {tau}" if separating else
                  f"no row separates the transformer-only policies by more than {SEPARATES} pooled seed stds and more than seed noise "
                  f"alone; this row has the highest seed-to-seed Kendall tau, {tau}, over a range of {f['range_in_pooled_std']:.2f} "
                  f"pooled stds (noise alone: {noise}; ANOVA p {_f(f['anova_p'])})")
        vs_longest = pick.get("vs_longest")
        if vs_longest:
            low, high = vs_longest["kendall_ci"]
            reason += f"; its policy means rank against the cell's longest length at Kendall {_tau(vs_longest)}"
            if low <= 0 <= high:
                reason += " (its CI holds 0: it ranks how fast the policies learn, not where the long schedule ends)"
        if len(candidates) < len(cells):
            reason += (f"; chosen among {', '.join(sorted(candidates))}, the cells with the most transformer-only policies "
                       f"({len(transformer_only(records[pick['cell']]))}): the trend cells are shown, not chosen")
        chosen = {"cell": pick["cell"], "epochs": pick["epochs"], "separates": bool(separating), "reason": reason}
    return {"schema": REGIME_SCHEMA, "separates_at": SEPARATES, "familywise": FAMILYWISE, "cells": {n: str(p) for n, p in cells.items()},
            "common_policies": None if common is None else sorted(common), "rows": rows, "chosen": chosen}


def regime_markdown(regime: dict[str, Any], command: str) -> str:
    """The map as markdown: one line per (cell, length), final and best-epoch values."""
    lines = ["# The regime map: where sharing choices inside the transformer separate", "",
             f"Regenerate: `{command}`", "",
             "Per cell and length, over the policies without early specialization or the parallel branch: the mean of the "
             "policy means (where it stops rising is the plateau of the length study), the std of the policy means (between), the pooled seed std (pooled), between / pooled (seed noise alone gives about "
             "1/sqrt(seeds), the `noise` column), the range of the means in pooled stds, and the seed-to-seed Kendall tau "
             "with its 95% bootstrap CI; `noise range` is the range of that many means that seed noise alone exceeds "
             f"{regime.get('familywise', FAMILYWISE):.0%} of the time (Tukey's HSD, in pooled stds), and `ANOVA p` the one-way ANOVA "
             f"of the policies. A cell separates when the range exceeds {regime['separates_at']} pooled stds and the noise range. "
             "`controls` are the paired differences of the policies with extras from the reference (mean ± SE).", ""]
    for which in ("final", "best"):
        title = "At the end of each length's schedule" if which == "final" else "At each run's best scored epoch (selected on the held-out set: optimistic)"
        lines += [f"## {title}", ""]
        frame = []
        for r in regime["rows"]:
            s = r[which]
            frame.append({
                "cell": r["cell"], "epochs": r["epochs"], "metric": r["metric"], "policies": s["policies"], "runs": r["runs"],
                "mean": _f(s["mean"]), "between": _f(s["between_std"]), "pooled": _f(s["pooled_std"]), "between/pooled": _f(s["between_over_pooled"]),
                "noise": _f(s["noise_only_ratio"]), "range/pooled": _f(s["range_in_pooled_std"]),
                "noise range": _f(s.get("noise_range_in_pooled_std")), "ANOVA p": _f(s.get("anova_p")),
                "kendall": _tau(s),
                **({"tau vs longest": _tau(r["vs_longest"]) if r.get("vs_longest") else "-"} if which == "final" else {}),
                "best": s["best_policy"] or "-",
                "controls": "; ".join(f"{n} {_f(d['mean'])} ± {_f(d['se'])}" for n, d in (s.get("controls_vs_reference") or {}).items()) or "-",
                "CPU-h (standalone)": f"{r['standalone_cpu_hours']:.2f}",
            })
        lines += [pd.DataFrame(frame).to_markdown(index=False), ""]
    if regime.get("common_policies"):
        lines += ["## The trend across cells, over the transformer-only policies every cell has", "",
                  f"{len(regime['common_policies'])} policies: {', '.join(regime['common_policies'])}; final values.", ""]
        frame = [{"cell": r["cell"], "epochs": r["epochs"], "policies": r["common"]["policies"], "mean": _f(r["common"]["mean"]),
                  "between": _f(r["common"]["between_std"]), "pooled": _f(r["common"]["pooled_std"]),
                  "between/pooled": _f(r["common"]["between_over_pooled"]), "range/pooled": _f(r["common"]["range_in_pooled_std"]),
                  "noise range": _f(r["common"]["noise_range_in_pooled_std"]), "ANOVA p": _f(r["common"]["anova_p"]), "kendall": _tau(r["common"])}
                 for r in regime["rows"]]
        lines += [pd.DataFrame(frame).to_markdown(index=False), ""]
    cpu = {r["cell"]: r["cell_cpu_hours"] for r in regime["rows"]}
    lines += ["CPU-hours as trained (trunk + cool-down branches + scoring): " + ", ".join(f"{c} {h:.2f}" for c, h in cpu.items()), ""]
    chosen = regime.get("chosen")
    lines += ["## Chosen cell", "", f"{chosen['cell']} at {chosen['epochs']} epochs: {chosen['reason']}." if chosen else "None yet.", ""]
    return "\n".join(lines)


def _tau(stats_row: dict[str, Any]) -> str:
    """The seed-to-seed Kendall tau with its CI, as the map prints it."""
    if stats_row["kendall"] is None:
        return "-"
    low, high = stats_row["kendall_ci"]
    return f"{stats_row['kendall']:.3f} [{low:.2f}, {high:.2f}]"


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
