"""A bench directory (or its committed JSON) as a table: per-policy mean +- std over seeds, the noise
ceiling (how well two seeds of the same training rank the policies alike), the training-length study
and the check of the paper's ablation directions."""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas.bench.ranking import rank_agreement

SCHEMA = "sharenas/bench/v1"
PAPER_RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "paper_results.json"
LOWER_IS_BETTER = {"val_loss"}
METRICS = {
    "val_loss": "val_loss",
    "zeroshot_shapes": "metrics.zeroshot/shapes/top1",
    "zeroshot_digits": "metrics.zeroshot/digits/top1",
    "retrieval_shapes_i2t_r1": "metrics.retrieval/shapes/i2t_r1",
    "retrieval_shapes_t2i_r1": "metrics.retrieval/shapes/t2i_r1",
    "linear_probe_digits": "metrics.linear_probe/digits/acc",
}
"""Column -> where in an entry record it comes from (accuracies and recalls in percent)."""
PACKAGES = ("torch", "numpy", "scipy", "pandas", "open-clip-torch", "sharenas")


def read_entries(bench_dir: str | Path) -> list[dict[str, Any]]:
    root = Path(bench_dir) / "entries"
    if not root.is_dir():
        raise FileNotFoundError(f"{bench_dir} holds no entries/ folder: give the --out of `sharenas bench build`")
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/seed_*.json"))]


def _get(record: dict[str, Any], path: str) -> float:
    value: Any = record
    for part in path.split(".", 1):
        value = value.get(part, float("nan")) if isinstance(value, dict) else float("nan")
    return float(value) if value is not None else float("nan")


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (policy, seed) with the metric columns, params and train seconds."""
    rows = [
        {"policy": r["name"], "seed": r["seed"], "params": r["params"], "shared_sublayers": r.get("shared_sublayers"),
         **{col: _get(r, path) for col, path in METRICS.items()}, "train_seconds": r["train_seconds"]}
        for r in records
    ]
    return pd.DataFrame(rows)


def summary_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per policy: params, seeds, and mean / std (ddof 1) of every metric, best val loss first."""
    grouped = runs.groupby("policy", sort=False)
    out = grouped[["params"]].first()
    out["seeds"] = grouped["seed"].count()
    for col in METRICS:
        out[f"{col}_mean"] = grouped[col].mean()
        out[f"{col}_std"] = grouped[col].std(ddof=1)
    return out.sort_values("val_loss_mean")


def _oriented(values: pd.Series, column: str) -> np.ndarray:
    return -values.to_numpy(float) if column in LOWER_IS_BETTER else values.to_numpy(float)


def seed_agreement(runs: pd.DataFrame, column: str, seeds: tuple[int, int] = (0, 1), bootstrap: int = 2000) -> dict[str, Any] | None:
    """Rank agreement between two seeds over the policies that have both: the noise ceiling of `column`."""
    wide = runs.pivot_table(index="policy", columns="seed", values=column)
    if not set(seeds) <= set(wide.columns):
        return None
    wide = wide[list(seeds)].dropna()
    if len(wide) < 3:
        return None
    result = rank_agreement(_oriented(wide[seeds[0]], column), _oriented(wide[seeds[1]], column), samples=bootstrap)
    return {**result, "seeds": list(seeds)}


def length_study(records: list[dict[str, Any]], seeds: tuple[int, int] = (0, 1), bootstrap: int = 2000) -> list[dict[str, Any]]:
    """Seed-to-seed agreement of the held-out loss at every scored point of the schedule."""
    rows = [{"policy": r["name"], "seed": r["seed"], "step": c["step"], "epoch": c["epoch"], "val_loss": c["val_loss"]} for r in records for c in r["curve"]]
    if not rows:
        return []
    curve = pd.DataFrame(rows)
    last = curve["step"].max()
    final = curve[curve["step"] == last].groupby("policy")["val_loss"].mean()
    out = []
    for (step, epoch), part in curve.groupby(["step", "epoch"]):
        agreement = seed_agreement(part, "val_loss", seeds, bootstrap)
        if agreement is not None:
            policy_means = part.groupby("policy")["val_loss"].mean()
            spread = part.groupby("policy")["val_loss"].std(ddof=1).mean()
            common = policy_means.index.intersection(final.index)
            to_final = rank_agreement(-final[common].to_numpy(), -policy_means[common].to_numpy(), samples=bootstrap)
            out.append({"step": int(step), "epoch": float(epoch), **agreement,
                        "kendall_vs_final": to_final["kendall"], "kendall_vs_final_ci": to_final["kendall_ci"],
                        "val_loss_policy_range": float(policy_means.max() - policy_means.min()), "val_loss_seed_std": float(spread)})
    return out


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def bench_table(bench_dir: str | Path, bootstrap: int = 2000, paper: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine-readable bench: policies with their runs and summaries, the noise ceiling per
    metric (`noise_ceiling` is the val loss's), the length study and, given the paper's tables, the
    direction check."""
    bench_dir = Path(bench_dir)
    records = read_entries(bench_dir)
    if not records:
        raise ValueError(f"{bench_dir} holds no finished entries yet; run `sharenas bench build` first")
    runs = runs_frame(records)
    summary = summary_frame(runs)
    policies: dict[str, Any] = {}
    for name, row in summary.iterrows():
        mine = [r for r in records if r["name"] == name]
        policies[name] = {
            "params": int(row["params"]), "policy": mine[0]["policy"], "shared_sublayers": mine[0].get("shared_sublayers"),
            "mean": {c: _finite(row[f"{c}_mean"]) for c in METRICS}, "std": {c: _finite(row[f"{c}_std"]) for c in METRICS},
            "runs": [{"seed": r["seed"], "steps": r["steps"], "train_seconds": r["train_seconds"], "train_loss": r.get("train_loss"),
                      **{c: _finite(_get(r, p)) for c, p in METRICS.items()}, "curve": r["curve"]} for r in sorted(mine, key=lambda r: r["seed"])],
        }
    ceilings = {c: seed_agreement(runs, c, bootstrap=bootstrap) for c in METRICS}
    config_file = bench_dir / "config.yaml"
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "config": config_file.read_text() if config_file.is_file() else None,
        "packages": package_versions(),
        "entries": len(records),
        "train_wall_seconds": round(float(runs["train_seconds"].sum()), 1),
        "policies": policies,
        "noise_ceiling": ceilings["val_loss"],
        "noise_ceiling_by_metric": ceilings,
        "length_study": length_study(records, bootstrap=bootstrap),
    }
    if paper is not None:
        result["paper_check"] = paper_check(summary, paper)
    return result


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# ---- the paper's ablations -------------------------------------------------------------------------

PAPER_PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("Table 3", "share-all", "msclip", "sharing the LNs too"),
    ("Table 3", "share-attn-ffn-ln1", "msclip", "sharing LN1 too"),
    ("Table 3", "share-attn-ffn-ln2", "msclip", "sharing LN2 too"),
    ("Table 3", "msclip", "clip-t768", "sharing attention + FFN"),
    ("Table 3", "msclip", "clip", "MS-CLIP vs CLIP"),
    ("Table 3", "clip-t768", "clip", "a 768-wide text tower"),
    ("Table 4", "share-last-6", "msclip", "sharing only the last 6 layers"),
    ("Table 4", "share-last-4", "msclip", "sharing only the last 4 layers"),
    ("Table 6", "msclip-es", "msclip", "early specialization"),
    ("Table 6", "msclip-pb", "msclip", "parallel branch"),
    ("Table 6", "msclip-s", "msclip", "ES + parallel branch"),
    ("Table 6", "msclip-s", "clip", "MS-CLIP-S vs CLIP"),
    ("supp. Table 5", "share-ffn-only", "msclip", "sharing the FFN only"),
    ("supp. Table 5", "share-attn-only", "msclip", "sharing attention only"),
    ("supp. Table 5", "share-ffn-only", "share-attn-only", "FFN-only vs attention-only"),
    ("supp. Table 6", "msclip-s-avgpool", "msclip-s", "average pooling instead of DWConv in the adapters"),
)
"""(table, A, B, what A - B measures): the paper's zero-shot ImageNet difference A - B against ours."""


def load_paper_results() -> dict[str, Any] | None:
    """The paper's tables (`experiments/paper_results.json` of the checkout), or None outside one."""
    return json.loads(PAPER_RESULTS.read_text()) if PAPER_RESULTS.is_file() else None


def paper_scores(paper: dict[str, Any]) -> dict[str, float]:
    """Preset -> zero-shot ImageNet top-1 of the paper (B/32, YFCC)."""
    scores: dict[str, float] = {}
    for key in ("table3_sublayer_sharing", "table6_auxiliary_modules", "supp_table5_partial_sharing"):
        for row in paper.get(key, []):
            if row.get("zero_shot_in") is not None:
                scores[row["preset"]] = row["zero_shot_in"]
    for row in paper.get("table4_share_last_k", []):
        if isinstance(row["k"], int) and row.get("zero_shot_in") is not None:
            scores.setdefault(f"share-last-{row['k']}", row["zero_shot_in"])
    for row in paper.get("supp_table6_adapters", []):
        if "without DWConv" in row["variant"]:
            scores["msclip-s-avgpool"] = row["zero_shot_in"]
    return scores


def paper_check(summary: pd.DataFrame, paper: dict[str, Any]) -> list[dict[str, Any]]:
    """For each ablation pair: the paper's zero-shot difference and ours in held-out loss (B - A, so
    positive = A better, as in the paper's A - B) with the seeds' standard error, and whether the
    directions agree; `clear` says whether ours is larger than twice its standard error."""
    scores = paper_scores(paper)
    scores.setdefault("share-last-12", scores.get("msclip"))
    out = []
    for table, a, b, what in PAPER_PAIRS:
        if a not in summary.index or b not in summary.index or a not in scores or b not in scores:
            continue
        ra, rb = summary.loc[a], summary.loc[b]
        ours = float(rb["val_loss_mean"] - ra["val_loss_mean"])
        se = float(np.sqrt(ra["val_loss_std"] ** 2 / ra["seeds"] + rb["val_loss_std"] ** 2 / rb["seeds"]))
        zs = float(ra["zeroshot_shapes_mean"] - rb["zeroshot_shapes_mean"])
        theirs = float(scores[a] - scores[b])
        out.append({
            "table": table, "a": a, "b": b, "effect": what, "paper_zeroshot_diff": round(theirs, 2),
            "tiny_val_loss_gain": ours, "tiny_val_loss_gain_se": se, "tiny_zeroshot_shapes_diff": zs,
            "same_direction": bool(np.sign(ours) == np.sign(theirs)), "clear": bool(abs(ours) > 2 * se),
        })
    trend = [(k, f"share-last-{k}" if k not in (0, 12) else ("clip-t768" if k == 0 else "msclip")) for k in (0, 2, 4, 6, 8, 10, 12)]
    ks = [(k, n) for k, n in trend if n in summary.index]
    paper_k = [(k, scores.get(f"share-last-{k}") if k not in (0, 12) else scores.get("clip-t768" if k == 0 else "msclip")) for k, _ in ks]
    if len(ks) >= 3:
        from scipy import stats

        tiny_rho = stats.spearmanr([k for k, _ in ks], [-summary.loc[n, "val_loss_mean"] for _, n in ks]).statistic
        known = [(k, s) for k, s in paper_k if s is not None]
        paper_rho = stats.spearmanr([k for k, _ in known], [s for _, s in known]).statistic
        out.append({
            "table": "Table 4", "a": "share-last-K", "b": "K", "effect": "Spearman of K (shared layers) with the score",
            "paper_spearman": float(paper_rho), "tiny_spearman": float(tiny_rho),
            "same_direction": bool(np.sign(paper_rho) == np.sign(tiny_rho)),
        })
    return out
