"""The per-compute study as markdown: the regret curve and the paired difference against the reference
of every strategy at every budget, and the supernet's searches."""
from __future__ import annotations

from typing import Any

import pandas as pd


def _cell(mean: float | None, std: float | None, returned: list[str | None]) -> str:
    if mean is None:
        return "-"
    got = sum(p is not None for p in returned)
    spread = "" if std is None else f" ± {std:.3f}"
    return f"{mean:+.3f}{spread}" + ("" if got == len(returned) else f" ({got}/{len(returned)})")


def curves_frame(result: dict[str, Any], key: str) -> pd.DataFrame:
    """Strategies x budgets: `regret` or `vs_reference`, mean ± std over search seeds."""
    rows = []
    for s in result["strategies"]:
        row = {"strategy": s["name"], "search seeds": s["seeds"]}
        for p in s["points"]:
            row[f"{p['budget']:g} runs"] = _cell(p[f"{key}_mean"], p[f"{key}_std"], p["returned"])
        rows.append(row)
    return pd.DataFrame(rows)


def picks_frame(result: dict[str, Any]) -> pd.DataFrame:
    """Strategies x budgets: the policies returned (most frequent first, with their count)."""
    rows = []
    for s in result["strategies"]:
        row = {"strategy": s["name"]}
        for p in s["points"]:
            counts = pd.Series([r for r in p["returned"] if r is not None], dtype=object).value_counts()
            row[f"{p['budget']:g} runs"] = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items()) or "-"
        rows.append(row)
    return pd.DataFrame(rows)


def per_compute_markdown(result: dict[str, Any], command: str) -> str:
    cfg, unit = result["config"], result["unit"]
    runs = pd.DataFrame(result["supernet_runs"])
    if not runs.empty:
        runs = runs.round({"cost_runs": 2, "kendall_choose": 3, "kendall_report": 3})
    how = pd.DataFrame([{"strategy": s["name"], "what it runs and observes": s["how"]} for s in result["strategies"]])
    return "\n".join([
        "# Which search finds the best sharing policy for a given compute (ShareBench-tiny)", "",
        f"Regenerate: `{command}`.", "",
        f"Compute is counted in standalone runs of the bench's recipe: {unit['what']}, "
        f"{unit['standalone_cpu_seconds']:.1f} CPU s for {unit['standalone_steps']} steps. Every cost is CPU seconds of one thread, "
        "measured by the same code: on a busy machine they stretch less than wall seconds, but not by nothing (compare the "
        "searches of the same setting, budget and steps below). Trials of bench policies are look-ups of the "
        f"bench's seed-{cfg['observe_seed']} runs, charged their cost (a full run: 1; one epoch of it: 1/6; a short run: its steps over "
        f"the full run's); the returned policy is judged by the bench's seed {', '.join(map(str, cfg['judge_seeds']))} runs alone.", "",
        f"**Halves** (split seed {cfg['split_seed']}): settings are chosen on the choice half ({len(result['choose_half'])} policies: "
        f"{', '.join(result['choose_half'])}); every curve searches and is reported on the report half ({len(result['report_half'])} "
        f"policies: {', '.join(result['report_half'])}). Its best policy by the judge seeds is `{result['best']}` "
        f"({result['best_judged_loss']:.3f} nats); `{cfg['reference']}` has regret {result['reference_regret']:+.3f}. "
        f"The supernet setting chosen on the choice half: `{result['supernet_setting_chosen']}`.", "",
        "## Regret (judged held-out loss minus the report half's best; nats, lower is better)", "",
        "Mean ± std over search seeds; `(k/n)`: only k of n search seeds had returned a policy at that budget; `-`: none had.", "",
        curves_frame(result, "regret").to_markdown(index=False), "",
        f"## Paired difference against `{cfg['reference']}` (judge seeds; negative: better than {cfg['reference']})", "",
        curves_frame(result, "vs_reference").to_markdown(index=False), "",
        "## What each strategy returned", "",
        picks_frame(result).to_markdown(index=False), "",
        "## The strategies", "",
        how.to_markdown(index=False), "",
        "## The supernet's searches", "",
        "Each search's measured cost (search plus scoring the report half with inherited weights) and the Kendall tau of its "
        "inherited losses against the bench on each half.", "",
        runs.to_markdown(index=False) if not runs.empty else "none yet", "",
    ])
