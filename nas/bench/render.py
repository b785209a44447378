"""The bench as markdown (pandas `to_markdown`): the per-policy table with computed chance levels, the
pooled seed std, the differences from the reference paired by seed, the noise ceilings, the
training-length study and the paper check."""
from __future__ import annotations

from typing import Any

import pandas as pd

from nas.bench.record import BenchRecord


def ci_text(agreement: dict[str, Any] | None, key: str = "kendall") -> str:
    """`value [low, high]` of a rank agreement measure (`-` where there is none)."""
    if not agreement or agreement.get(key) is None:
        return "-"
    low, high = agreement[f"{key}_ci"]
    return f"{agreement[key]:.3f} [{low:.3f}, {high:.3f}]"


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


LABELS = {
    "val_loss": ("held-out loss", "nats", 3),
    "zeroshot_shapes": ("zero-shot shapes", "%", 1),
    "zeroshot_digits": ("zero-shot digits", "%", 1),
    "retrieval_shapes_i2t_r1": ("shapes i2t R@1", "%", 1),
    "retrieval_shapes_t2i_r1": ("shapes t2i R@1", "%", 1),
    "linear_probe_digits": ("linear probe digits", "%", 1),
    "zeroshot_clipart": ("zero-shot clip art", "%", 1),
    "zeroshot_emoji": ("zero-shot emoji groups", "%", 1),
    "retrieval_real_i2t_r1": ("real i2t R@1", "%", 1),
    "retrieval_real_t2i_r1": ("real t2i R@1", "%", 1),
    "retrieval_real_i2t_r10": ("real i2t R@10", "%", 1),
    "retrieval_real_t2i_r10": ("real t2i R@10", "%", 1),
    "retrieval_real_r10": ("real R@10, mean of both directions", "%", 1),
}
"""Column -> (heading, unit, decimals); a column not listed is headed by its name, with 3 decimals."""


def _label(table: BenchRecord, metric: str, chance: bool = True) -> str:
    name, unit, _ = LABELS.get(metric, (metric, "", 3))
    level = (table.chance or {}).get(metric) if chance else None
    notes = [n for n in (unit, None if level is None else f"chance {level:.3g}") if n]
    return f"{name} ({'; '.join(notes)})" if notes else name


def _digits(metric: str) -> int:
    return LABELS.get(metric, (metric, "", 3))[2]


def policy_frame(table: BenchRecord) -> pd.DataFrame:
    rows = []
    for name, p in table.policies.items():
        m, s = p.mean, p.std
        rows.append({"policy": name, "params": f"{p.params:,}", "seeds": len(p.runs),
                     **{_label(table, c): _pm(m[c], s[c], _digits(c)) for c in table.columns}})
    return pd.DataFrame(rows)


def spread_frame(table: BenchRecord) -> pd.DataFrame:
    rows = [{"metric": _label(table, c, chance=False), "pooled seed std": _pm(v["std"], None, _digits(c) + 1), "df": v["df"], "policies": v["policies"]}
            for c, v in (table.pooled_std or {}).items()]
    return pd.DataFrame(rows)


def spread_line(table: BenchRecord) -> str:
    """The pooled seed std of the held-out loss, in words."""
    pooled = (table.pooled_std or {}).get("val_loss")
    if not pooled or pooled["std"] is None:
        return "One seed per policy: no pooled seed std."
    return (f"**Pooled seed std** of the held-out loss: {pooled['std']:.4f} nats (df {pooled['df']}, within-policy variance pooled over "
            f"{pooled['policies']} policies); each policy's own std has its seeds - 1 df.")


def _paired(d: dict[str, Any] | None, digits: int) -> str:
    if not d or d["mean"] is None:
        return "-"
    return f"{d['mean']:+.{digits}f}" + ("" if d["se"] is None else f" ± {d['se']:.{digits}f}")


def paired_frame(table: BenchRecord) -> pd.DataFrame:
    """Each policy's difference from the reference paired by seed: mean ± standard error per metric, n and
    the 95% interval of the held-out loss's."""
    rows = []
    for name, p in table.policies.items():
        paired = p.vs_reference
        if not paired:
            continue
        loss = paired.get("val_loss") or {}
        low, high = loss.get("ci95") or (None, None)
        rows.append({"policy": name, "paired seeds": loss.get("n", 0),
                     **{_label(table, c, chance=False): _paired(paired.get(c), _digits(c)) for c in table.columns},
                     "held-out loss 95% CI": "-" if low is None else f"[{low:+.3f}, {high:+.3f}]"})
    return pd.DataFrame(rows)


def best_frame(table: BenchRecord) -> pd.DataFrame:
    """Per policy and metric: final mean, best-epoch mean and the mean epoch of the best (empty without curves of every metric)."""
    rows = []
    for name, p in table.policies.items():
        best = p.best_mean
        if not best:
            continue
        rows.append({"policy": name, **{
            _label(table, c, chance=False): f"{_pm(p.mean[c], None, _digits(c))} / {_pm(best[c]['value'], None, _digits(c))} @ {best[c]['epoch']:.1f}"
            for c in table.columns if best.get(c) and best[c]["value"] is not None}})
    return pd.DataFrame(rows)


def ceiling_frame(table: BenchRecord) -> pd.DataFrame:
    rows = [
        {"metric": metric, "policies": int(a["n"]) if a else 0, "seeds": "-" if not a else " vs ".join(str(s) for s in a.get("seeds", (0, 1))),
         "Kendall tau [95% CI]": ci_text(a), "Spearman rho [95% CI]": ci_text(a, "spearman"),
         "top-5 overlap": "-" if not a else f"{a['top5_overlap']:.2f}"}
        for metric, a in (table.noise_ceiling_by_metric or {}).items()
    ]
    return pd.DataFrame(rows)


def length_frame(table: BenchRecord) -> pd.DataFrame:
    rows = [
        {"epoch": r["epoch"], "step": r["step"], "seed-to-seed Kendall tau [95% CI]": ci_text(r), "Spearman rho": f"{r['spearman']:.3f}",
         "mean over seeds vs the final mean, Kendall tau [95% CI]": ci_text(r, "kendall_vs_final"),
         "range of policy means": f"{r['val_loss_policy_range']:.3f}", "mean seed std": f"{r['val_loss_seed_std']:.3f}"}
        for r in table.length_study or []
    ]
    return pd.DataFrame(rows)


def _paper_zeroshot(table: BenchRecord) -> str:
    """The column the paper check compares zero-shot differences on (the key it wrote them under)."""
    rows = [r for r in (table.paper_check or []) if "paper_spearman" not in r]
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("tiny_") and k.endswith("_diff")]
    return keys[0].removeprefix("tiny_").removesuffix("_diff") if keys else "zeroshot_shapes"


def paper_frame(table: BenchRecord) -> pd.DataFrame:
    column = _paper_zeroshot(table)
    heading = f"tiny {LABELS.get(column, (column,))[0]}"
    rows = []
    for r in (table.paper_check or []):
        if "paper_spearman" in r:
            rows.append({"table": r["table"], "comparison": r["effect"], "paper": f"rho {r['paper_spearman']:+.2f}",
                         "tiny (held-out loss)": f"rho {r['tiny_spearman']:+.2f}", heading: "-",
                         "same direction": "yes" if r["same_direction"] else "**no**", "beyond 2 SE": "-"})
            continue
        rows.append({
            "table": r["table"], "comparison": f"{r['a']} vs {r['b']} ({r['effect']})", "paper": f"{r['paper_zeroshot_diff']:+.2f} pt",
            "tiny (held-out loss)": f"{r['tiny_val_loss_gain']:+.3f}" + ("" if r["tiny_val_loss_gain_se"] is None else f" ± {r['tiny_val_loss_gain_se']:.3f}"),
            heading: f"{r[f'tiny_{column}_diff']:+.1f} pt",
            "same direction": "yes" if r["same_direction"] else "**no**", "beyond 2 SE": "yes" if r["clear"] else "no",
        })
    return pd.DataFrame(rows)


def bench_markdown(table: BenchRecord, title: str, command: str, origin: str = "") -> str:
    nc, ranking = table.noise_ceiling, table.ranking_metric
    seeds = " vs ".join(f"seed {s}" for s in (nc or {}).get("seeds", (0, 1)))
    ceiling = (
        f"**Noise ceiling** ({_label(table, ranking, chance=False)}, the ranking metric; {seeds} over {int(nc['n'])} policies): "
        f"Kendall tau {ci_text(nc)}, Spearman rho {ci_text(nc, 'spearman')}; no-agreement spread of tau ±{nc['null_kendall_sd']:.3f} (1 sd)."
        if nc else "One seed per policy: no noise ceiling."
    )
    reference, paired = table.reference, paired_frame(table)
    parts = [
        f"# {title}", "",
        f"Regenerate: `{command}`{f' ({origin})' if origin else ''}. {table.entries} training runs of one CPU thread each, "
        f"{table.train_wall_seconds / 3600:.1f} hours of wall time summed over runs "
        f"(packages: {', '.join(f'{k} {v}' for k, v in table.packages.items())}). Means ± std over seeds (ddof 1); "
        "held-out loss: lower is better; percentages are accuracies / recalls in percent; chance: the score of uninformative "
        "features on this bench's evaluation data.", "",
        ceiling, "", spread_line(table), "",
        "## Policies", "", policy_frame(table).to_markdown(index=False), "",
        "## Seed spread pooled over policies", "",
        "The seed-to-seed std of one run, from the within-policy variance pooled over every policy with two or more seeds "
        "(degrees of freedom: the sum of seeds - 1 over policies), where a policy's own std has only its seeds - 1. "
        "Differences from the reference are judged best paired by seed (next section).", "",
        spread_frame(table).to_markdown(index=False, disable_numparse=True), "",
    ]
    if paired.empty:
        parts += [f"No `{reference}` runs in this bench: no differences paired by seed.", ""]
    else:
        parts += [
            f"## Differences from `{reference}`, paired by seed", "",
            f"Mean over the seeds both have of policy - `{reference}` ± its standard error (std of the differences, ddof 1, over "
            "sqrt n); the interval is Student t with n - 1 df. A seed's effect is largely shared by all policies, so pairing "
            "removes it; with one paired seed there is no standard error.", "",
            paired.to_markdown(index=False, disable_numparse=True), "",
        ]
    best = best_frame(table)
    if not best.empty:
        parts += [
            "## Best scored epoch", "",
            "Per policy, the mean over seeds of each run's best value over its scored epochs (and of the epoch it came at), beside "
            "the final value. The best epoch is selected on the held-out set itself, so these values are optimistic.", "",
            best.to_markdown(index=False, disable_numparse=True), "",
        ]
    if nc:
        parts += [
            "## Noise ceiling per metric", "",
            "Two seeds that every policy has, ranked against each other (the seeds column).", "",
            ceiling_frame(table).to_markdown(index=False), "",
            "## Training length (agreement of the held-out loss along the schedule)", "",
            length_frame(table).to_markdown(index=False), "",
        ]
    if table.lengths:
        parts += _lengths_section(table), ""
    if table.paper_check:
        parts += [
            "## Paper check (direction of each ablation)", "",
            "Paper: zero-shot ImageNet difference A - B (B/32, YFCC). Tiny: held-out loss of B minus A (positive = A better, "
            f"± standard error over seeds) and the {LABELS.get(_paper_zeroshot(table), (_paper_zeroshot(table),))[0]} difference A - B.", "",
            paper_frame(table).to_markdown(index=False), "",
        ]
    for agreement in table.agreement or []:
        parts += _agreement_section(agreement), ""
    return "\n".join(parts)


def _lengths_section(table: BenchRecord) -> str:
    study = table.lengths
    metrics = list(study["rows"][0]["kendall"])
    rows = [{"epochs": f"{r['epochs']:g}", "steps": r["steps"], "runs": r["runs"], "training wall hours": f"{r['train_hours']:.2f}",
             **{f"{LABELS.get(m, (m,))[0]} tau": ci_text({"kendall": r["kendall"][m], "kendall_ci": r["kendall_ci"][m]}) for m in metrics},
             "held-out loss pooled seed std": _pm(r["pooled_std"].get("val_loss"), None, 4)}
            for r in study["rows"]]
    return "\n".join([
        "## Training length study: schedules of different length", "",
        "The same policies and seeds trained with a full cosine schedule of each length; per metric, seed 0 against seed 1 "
        "Kendall tau [95% bootstrap CI] over the policies. Training wall hours are summed over runs (one CPU thread each, on a "
        f"shared machine). Knee: the shortest length whose {LABELS.get(study['metric'], (study['metric'],))[0]} tau is within one "
        f"bootstrap standard error ({study['best_kendall_se']:.3f}) of the best length's: **{study['knee_epochs']:g} epochs "
        f"({study['knee_steps']} steps)**.", "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
    ])


def _agreement_section(a: dict[str, Any]) -> str:
    rows = [{"table": r["table"], "comparison": f"{r['a']} vs {r['b']} ({r['effect']})", "paper": f"{r['paper']:+.2f}",
             "this bench": f"{r['this']:+.3f}" + ("" if r["this_se"] is None else f" ± {r['this_se']:.3f}"),
             a["against"]: f"{r['other']:+.3f}" + ("" if r["other_se"] is None else f" ± {r['other_se']:.3f}"),
             "benches agree": "yes" if r["benches_agree"] else "**no**",
             "this bench agrees with the paper": "yes" if r["this_agrees_with_paper"] else "no"}
            for r in a["paper_directions"]]
    agree = sum(r["benches_agree"] for r in a["paper_directions"])
    return "\n".join([
        f"## Does {bench_title(a['against'])} predict this bench?", "",
        f"Policy means over the {a['n']} policies both benches trained, {_ranked_by(a)}: Kendall tau {ci_text(a)}, "
        f"Spearman rho {ci_text(a, 'spearman')}, top-5 overlap {a['top5_overlap']:.2f} (95% bootstrap intervals over policies; "
        f"no-agreement spread of tau ±{a['null_kendall_sd']:.3f}).", "",
        f"Paper ablations (effect: held-out loss of B minus A, positive = A better, ± standard error over seeds; the share-last-K row "
        f"is the Spearman of K with the score): the two benches agree in direction on {agree} of {len(rows)}.", "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
    ])


def _ranked_by(a: dict[str, Any]) -> str:
    """Which metric ranked each bench in an agreement (those before `other_metric` ranked both by the loss)."""
    ours, theirs = (LABELS.get(m, (m,))[0] for m in (a["metric"], a.get("other_metric", a["metric"])))
    return f"each bench by {ours}" if ours == theirs else f"this bench by {ours}, {bench_title(a['against'])} by {theirs}"


def bench_title(name: str) -> str:
    """A bench's name as a heading: "sharebench-real-tiny" -> "ShareBench-real-tiny"."""
    return "ShareBench" + name.removeprefix("sharebench") if name.startswith("sharebench") else name
