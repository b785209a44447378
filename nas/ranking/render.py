"""The rank check as markdown and as a printable table: every proxy's Kendall tau, Spearman rho and
top-5 overlap against the bench with bootstrap intervals, as a fraction of the noise ceiling, and
what each proxy would pick within the search's budget."""
from __future__ import annotations

from typing import Any

import pandas as pd

from nas.bench.render import bench_title, ci_text
from nas.ranking.picks import picks_frame
from nas.ranking.rank_record import RankCheckRecord


def rank_check_frame(result: RankCheckRecord) -> pd.DataFrame:
    nc, runs = result.noise_ceiling, result.runs
    rows = [{"proxy": "noise ceiling (seed 0 vs seed 1)", "Kendall tau [95% CI]": ci_text(nc), "Spearman rho [95% CI]": ci_text(nc, "spearman"),
             "top-5 overlap": f"{nc['top5_overlap']:.2f}", "tau / ceiling": "1.00", "search s": "-", "overrides of the search config": ""}]
    for name, a in result.proxies.items():
        ratio = a.get("ratio_to_ceiling")
        run = runs.get(name.split("+")[0], {})
        seconds = run.get("search_seconds")
        rows.append({"proxy": name, "Kendall tau [95% CI]": ci_text(a), "Spearman rho [95% CI]": ci_text(a, "spearman"),
                     "top-5 overlap": f"{a['top5_overlap']:.2f}", "tau / ceiling": "-" if ratio is None else f"{ratio:.2f}",
                     "search s": "-" if seconds is None else f"{seconds:.0f}", "overrides of the search config": " ".join(run.get("set", []))})
    return pd.DataFrame(rows)


def rank_check_markdown(result: RankCheckRecord, command: str, bench_name: str = "sharebench-tiny") -> str:
    skipped = result.skipped_outside_space
    return "\n".join([
        f"# Rank check against {bench_title(bench_name)}", "",
        f"Regenerate: `{command}`. Ground truth: {result.truth} of the {result.n} bench policies in the supernet's space"
        + (f" ({', '.join(skipped)} lie outside it)." if skipped else "."),
        f"Supernet: `{result.supernet_run}`. Intervals: 95% paired bootstrap over policies; the no-agreement spread of tau "
        f"is ±{result.noise_ceiling['null_kendall_sd']:.3f} (1 sd) at this n."
        + (f" Kept from the previous result `{result.config.keep}` as scored then (not rescored by this run): "
           f"{', '.join(result.kept)}." if result.kept else ""), "",
        rank_check_frame(result).to_markdown(index=False), "",
        *(_picks_section(result.picks, result.val_loss_chance) if result.picks else []),
    ])


def _picks_section(rows: list[dict[str, Any]], chance: float | None) -> list[str]:
    return [
        "## What each proxy would pick within the search's budget", "",
        "Among the bench policies in the space and within the budget; standalone: the bench's mean ± std over seeds "
        f"(held-out loss in nats, lower is better{'' if chance is None else f'; chance {chance:.3g}'}).", "",
        picks_frame(rows).to_markdown(index=False), "",
    ]
