"""The bench as markdown (pandas `to_markdown`): the per-policy table, the noise ceilings, the
training-length study and the paper check."""
from __future__ import annotations

from typing import Any

import pandas as pd


def _ci(agreement: dict[str, Any] | None, key: str = "kendall") -> str:
    if not agreement or agreement.get(key) is None:
        return "-"
    low, high = agreement[f"{key}_ci"]
    return f"{agreement[key]:.3f} [{low:.3f}, {high:.3f}]"


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def policy_frame(table: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, p in table["policies"].items():
        m, s = p["mean"], p["std"]
        rows.append({
            "policy": name, "params": f"{p['params']:,}", "seeds": len(p["runs"]),
            "held-out loss (nats; chance 4.85)": _pm(m["val_loss"], s["val_loss"], 3),
            "zero-shot shapes % (chance 4.2)": _pm(m["zeroshot_shapes"], s["zeroshot_shapes"], 1),
            "zero-shot digits % (chance 10)": _pm(m["zeroshot_digits"], s["zeroshot_digits"], 1),
            "shapes i2t R@1 % (chance 0.3)": _pm(m["retrieval_shapes_i2t_r1"], s["retrieval_shapes_i2t_r1"], 1),
            "shapes t2i R@1 % (chance 0.3)": _pm(m["retrieval_shapes_t2i_r1"], s["retrieval_shapes_t2i_r1"], 1),
        })
    return pd.DataFrame(rows)


def ceiling_frame(table: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"metric": metric, "policies": int(a["n"]) if a else 0, "Kendall tau [95% CI]": _ci(a), "Spearman rho [95% CI]": _ci(a, "spearman"),
         "top-5 overlap": "-" if not a else f"{a['top5_overlap']:.2f}"}
        for metric, a in table["noise_ceiling_by_metric"].items()
    ]
    return pd.DataFrame(rows)


def length_frame(table: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"epoch": r["epoch"], "step": r["step"], "seed 0 vs seed 1 Kendall tau [95% CI]": _ci(r), "Spearman rho": f"{r['spearman']:.3f}",
         "mean over seeds vs the final mean, Kendall tau [95% CI]": _ci(r, "kendall_vs_final"),
         "range of policy means": f"{r['val_loss_policy_range']:.3f}", "mean seed std": f"{r['val_loss_seed_std']:.3f}"}
        for r in table["length_study"]
    ]
    return pd.DataFrame(rows)


def paper_frame(table: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in table.get("paper_check", []):
        if "paper_spearman" in r:
            rows.append({"table": r["table"], "comparison": r["effect"], "paper": f"rho {r['paper_spearman']:+.2f}",
                         "tiny (held-out loss)": f"rho {r['tiny_spearman']:+.2f}", "tiny zero-shot shapes": "-",
                         "same direction": "yes" if r["same_direction"] else "**no**", "beyond 2 SE": "-"})
            continue
        rows.append({
            "table": r["table"], "comparison": f"{r['a']} vs {r['b']} ({r['effect']})", "paper": f"{r['paper_zeroshot_diff']:+.2f} pt",
            "tiny (held-out loss)": f"{r['tiny_val_loss_gain']:+.3f}" + ("" if r["tiny_val_loss_gain_se"] is None else f" ± {r['tiny_val_loss_gain_se']:.3f}"),
            "tiny zero-shot shapes": f"{r['tiny_zeroshot_shapes_diff']:+.1f} pt",
            "same direction": "yes" if r["same_direction"] else "**no**", "beyond 2 SE": "yes" if r["clear"] else "no",
        })
    return pd.DataFrame(rows)


def bench_markdown(table: dict[str, Any], title: str, command: str) -> str:
    nc = table["noise_ceiling"]
    ceiling = (
        f"**Noise ceiling** (held-out loss, seed 0 vs seed 1 over {int(nc['n'])} policies): Kendall tau {_ci(nc)}, "
        f"Spearman rho {_ci(nc, 'spearman')}; no-agreement spread of tau ±{nc['null_kendall_sd']:.3f} (1 sd)."
        if nc else "One seed per policy: no noise ceiling."
    )
    parts = [
        f"# {title}", "",
        f"Regenerate: `{command}`. {table['entries']} training runs of one CPU thread each, {table['train_wall_seconds'] / 3600:.1f} hours "
        "of wall time summed over runs "
        f"(packages: {', '.join(f'{k} {v}' for k, v in table['packages'].items())}). Means ± std over seeds (ddof 1); "
        "held-out loss: lower is better; percentages are accuracies / recalls in percent.", "",
        ceiling, "",
        "## Policies", "", policy_frame(table).to_markdown(index=False), "",
    ]
    if nc:
        parts += [
            "## Noise ceiling per metric", "", ceiling_frame(table).to_markdown(index=False), "",
            "## Training length (agreement of the held-out loss along the schedule)", "",
            length_frame(table).to_markdown(index=False), "",
        ]
    if table.get("paper_check"):
        parts += [
            "## Paper check (direction of each ablation)", "",
            "Paper: zero-shot ImageNet difference A - B (B/32, YFCC). Tiny: held-out loss of B minus A (positive = A better, "
            "± standard error over seeds) and the zero-shot shapes difference A - B.", "",
            paper_frame(table).to_markdown(index=False), "",
        ]
    return "\n".join(parts)


def rank_check_frame(result: dict[str, Any]) -> pd.DataFrame:
    nc, runs = result["noise_ceiling"], result.get("runs", {})
    rows = [{"proxy": "noise ceiling (seed 0 vs seed 1)", "Kendall tau [95% CI]": _ci(nc), "Spearman rho [95% CI]": _ci(nc, "spearman"),
             "top-5 overlap": f"{nc['top5_overlap']:.2f}", "tau / ceiling": "1.00", "search s": "-", "overrides of the search config": ""}]
    for name, a in result["proxies"].items():
        ratio = a.get("ratio_to_ceiling")
        run = runs.get(name.split("+")[0], {})
        seconds = run.get("search_seconds")
        rows.append({"proxy": name, "Kendall tau [95% CI]": _ci(a), "Spearman rho [95% CI]": _ci(a, "spearman"),
                     "top-5 overlap": f"{a['top5_overlap']:.2f}", "tau / ceiling": "-" if ratio is None else f"{ratio:.2f}",
                     "search s": "-" if seconds is None else f"{seconds:.0f}", "overrides of the search config": " ".join(run.get("set", []))})
    return pd.DataFrame(rows)


def rank_check_markdown(result: dict[str, Any], command: str) -> str:
    skipped = result.get("skipped_outside_space") or []
    return "\n".join([
        "# Rank check against ShareBench-tiny", "",
        f"Regenerate: `{command}`. Ground truth: {result['truth']} of the {result['n']} bench policies in the supernet's space"
        + (f" ({', '.join(skipped)} lie outside it)." if skipped else "."),
        f"Supernet: `{result['supernet_run']}`. Intervals: 95% paired bootstrap over policies; the no-agreement spread of tau "
        f"is ±{result['noise_ceiling']['null_kendall_sd']:.3f} (1 sd) at this n.", "",
        rank_check_frame(result).to_markdown(index=False), "",
        *(_picks_section(result["picks"]) if result.get("picks") else []),
    ])


def _picks_section(rows: list[dict[str, Any]]) -> list[str]:
    from nas.bench.picks import picks_frame

    return [
        "## What each proxy would pick within the search's budget", "",
        "Among the bench policies in the space and within the budget; standalone: the bench's mean ± std over seeds "
        "(held-out loss in nats, lower is better; chance 4.85).", "",
        picks_frame(rows).to_markdown(index=False), "",
    ]
