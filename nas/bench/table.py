"""A bench directory (or its committed JSON, recomputed from the runs it records) as a table (`BenchRecord`): per-policy
mean +- std over seeds, the pooled seed std and each policy's difference from the reference policy
paired by seed, the chance level of every metric, the noise ceiling (how well two seeds of the same
training rank the policies alike), the training-length study and the check of the paper's ablation
directions. Every run records the precision it was scored in; the table states it (`score_precision`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer.typed_config import load_config

from nas.bench.build import entry_score_precision
from nas.bench.chance import column_chance, recipe_chance
from nas.bench.config import SYNTHETIC_METRICS, BenchConfig, HeldOutSection, metric_sources
from nas.bench.record import LOWER_IS_BETTER, BenchPolicy, BenchRecord, BenchRun
from nas.bench.spread import finite, paired_records, pooled_std
from nas.provenance import package_versions
from nas.ranking.statistics import rank_agreement

PAPER_RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "paper_results.json"
BENCH_PACKAGES = ("torch", "numpy", "scipy", "pandas", "open-clip-torch", "sharenas")
"""The packages whose versions a bench table records."""


LENGTH_FIELDS = ("steps", "val_loss", "metrics", "curve", "train_loss", "train_seconds")
"""What an entry record's view at one length (`lengths[N]`) replaces."""


def at_length(record: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The entry record as if its run had been `epochs` long (its cool-down branch of that length)."""
    lengths = record.get("lengths") or {}
    if str(epochs) not in lengths:
        have = ", ".join(sorted(lengths, key=int)) or "none"
        raise ValueError(f"entry {record['name']}/seed_{record['seed']} has no {epochs}-epoch length (lengths: {have}); "
                         "choose one of the bench's lengths")
    return {**record, **{k: lengths[str(epochs)][k] for k in LENGTH_FIELDS if k in lengths[str(epochs)]}}


def read_entries(bench_dir: str | Path, length: int | None = None) -> list[dict[str, Any]]:
    """The finished entry records of a bench directory; at `length` epochs, their view at that length."""
    root = Path(bench_dir) / "entries"
    if not root.is_dir():
        raise FileNotFoundError(f"{bench_dir} holds no entries/ folder: give the --out of `sharenas bench build`")
    records = [json.loads(p.read_text()) for p in sorted(root.glob("*/seed_*.json"))]
    return records if length is None else [at_length(r, length) for r in records]


def record_value(record: dict[str, Any], source: str) -> float:
    """The value of an entry record at `source` (see `metric_sources`; the mean of several parts)."""
    values = []
    for path in metric_sources(source):
        value: Any = record
        for part in path.split(".", 1):
            value = value.get(part, float("nan")) if isinstance(value, dict) else float("nan")
        values.append(float(value) if value is not None else float("nan"))
    return float(np.mean(values))


def entry_policies(records: list[dict[str, Any]], metrics: dict[str, str] = SYNTHETIC_METRICS) -> dict[str, BenchPolicy]:
    """Entry records as the table's policies before any summary: params, policy, shared sublayers and
    the runs by seed."""
    out: dict[str, BenchPolicy] = {}
    for r in records:
        entry = out.setdefault(r["name"], BenchPolicy(r["params"], r["policy"], shared_sublayers=r.get("shared_sublayers")))
        best = {c: best_of_curve(r["curve"], c, p) for c, p in metrics.items()}
        entry.runs.append(BenchRun(r["seed"], {c: finite(record_value(r, p)) for c, p in metrics.items()}, r["steps"], r["train_seconds"],
                                   r.get("train_loss"), r["curve"], r.get("score_precision", "unrecorded"),
                                   best if any(b is not None for b in best.values()) else None))
    for entry in out.values():
        entry.runs.sort(key=lambda run: run.seed)
    return out


def best_of_curve(curve: list[dict[str, Any]], column: str, source: str) -> dict[str, float] | None:
    """The best value of `column` (read at `source`) over the scored points of a run's curve and the epoch
    of the first point that reached it; None when the curve holds no value of it (curves of benches that
    scored the held-out loss only)."""
    points = [(finite(record_value(point, source)), point["epoch"]) for point in curve]
    points = [(v, e) for v, e in points if v is not None]
    if not points:
        return None
    pick = min if column in LOWER_IS_BETTER else max
    value = pick(v for v, _ in points)
    return {"value": value, "epoch": next(e for v, e in points if v == value)}


def best_means(runs: list[BenchRun], metrics: list[str]) -> dict[str, dict[str, float | None]]:
    """Per column: the mean over a policy's runs of their best scored value and of the epoch it came at."""
    out: dict[str, dict[str, float | None]] = {}
    for column in metrics:
        best = [r.best[column] for r in runs if (r.best or {}).get(column)]
        out[column] = {"value": finite(np.mean([b["value"] for b in best])) if best else None,
                       "epoch": finite(np.mean([b["epoch"] for b in best])) if best else None}
    return out


def runs_frame(policies: dict[str, BenchPolicy], metrics: list[str]) -> pd.DataFrame:
    """One row per (policy, seed) with the metric columns, params and train seconds."""
    rows = [
        {"policy": name, "seed": run.seed, "params": p.params, "shared_sublayers": p.shared_sublayers,
         **{c: run.scores.get(c) for c in metrics}, "train_seconds": run.train_seconds}
        for name, p in policies.items() for run in p.runs
    ]
    return pd.DataFrame(rows).astype({c: float for c in metrics})


def summary_frame(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per policy: params, seeds, and mean / std (ddof 1) of every metric, best val loss first."""
    grouped = runs.groupby("policy", sort=False)
    out = grouped[["params"]].first()
    out["seeds"] = grouped["seed"].count()
    for col in metrics:
        out[f"{col}_mean"] = grouped[col].mean()
        out[f"{col}_std"] = grouped[col].std(ddof=1)
    return out.sort_values("val_loss_mean")


def _oriented(values: pd.Series, column: str) -> np.ndarray:
    return -values.to_numpy(float) if column in LOWER_IS_BETTER else values.to_numpy(float)


def ceiling_seeds(runs: pd.DataFrame) -> tuple[int, int] | None:
    """The two seeds a noise ceiling pairs: the two lowest seeds that every policy has, else the pair of
    seeds that the most policies share (lowest seeds first among ties); None with fewer than two seeds."""
    seeds_of = runs.groupby("policy")["seed"].apply(set)
    common = sorted(set.intersection(*seeds_of)) if len(seeds_of) else []
    if len(common) >= 2:
        return common[0], common[1]
    seeds = sorted(set(runs["seed"]))
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    if not pairs:
        return None
    return max(pairs, key=lambda ab: (sum(set(ab) <= have for have in seeds_of), -ab[0], -ab[1]))


def seed_agreement(runs: pd.DataFrame, column: str, seeds: tuple[int, int] | None = None, bootstrap: int = 2000) -> dict[str, Any] | None:
    """Rank agreement between two seeds (by default `ceiling_seeds`) over the policies that have both: the
    noise ceiling of `column`; `seeds` in the result says which were paired."""
    seeds = seeds or ceiling_seeds(runs)
    if seeds is None:
        return None
    wide = runs.pivot_table(index="policy", columns="seed", values=column)
    if not set(seeds) <= set(wide.columns):
        return None
    wide = wide[list(seeds)].dropna()
    if len(wide) < 3:
        return None
    result = rank_agreement(_oriented(wide[seeds[0]], column), _oriented(wide[seeds[1]], column), samples=bootstrap)
    return {**result, "seeds": list(seeds)}


def length_study(policies: dict[str, BenchPolicy], seeds: tuple[int, int] | None = None, bootstrap: int = 2000) -> list[dict[str, Any]]:
    """Seed-to-seed agreement of the held-out loss at every scored point of the schedule."""
    rows = [{"policy": name, "seed": run.seed, "step": c["step"], "epoch": c["epoch"], "val_loss": c["val_loss"]}
            for name, p in policies.items() for run in p.runs for c in run.curve]
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


def score_precision(policies: dict[str, BenchPolicy]) -> str:
    """The precision the runs were scored in, or the count of runs per precision when they differ."""
    counts = pd.Series([run.score_precision or "unrecorded" for p in policies.values() for run in p.runs]).value_counts().sort_index()
    if len(counts) == 1:
        return str(counts.index[0])
    return "mixed (runs per precision): " + ", ".join(f"{name} {n}" for name, n in counts.items())


def _trainer_chance(chance_config: str | Path | None, config: BenchConfig | None) -> dict[str, float]:
    return recipe_chance(chance_config, config) if chance_config is not None else {}


def _heldout(config: BenchConfig | None) -> HeldOutSection | None:
    return None if config is None else config.heldout


def bench_table(bench_dir: str | Path, bootstrap: int = 2000, paper: dict[str, Any] | None = None,
                chance_config: str | Path | None = None, length: int | None = None) -> BenchRecord:
    """The bench table of a bench directory (at `length` epochs: of its runs' cool-down branches of
    that length). The chance levels of the trainer's metrics come from the entries (recorded by `bench
    build`), else from the recipe of `chance_config` (the bench config the directory was built with)."""
    bench_dir = Path(bench_dir)
    records = [{**r, "score_precision": entry_score_precision(bench_dir, r)} for r in read_entries(bench_dir, length)]
    if not records:
        raise ValueError(f"{bench_dir} holds no finished entries yet; run `sharenas bench build` first")
    config_file = bench_dir / "config.yaml"
    config = load_config(config_file, BenchConfig) if config_file.is_file() else None
    recorded = next((r["chance"] for r in records if r.get("chance")), None) or _trainer_chance(chance_config, config)
    metrics = (config or BenchConfig()).metrics
    pairs = next((r["heldout_pairs"] for r in records if r.get("heldout_pairs")), None)
    chance = column_chance(metrics, _heldout(config), recorded, heldout_pairs=pairs)
    return summarize(entry_policies(records, metrics), list(metrics), config, package_versions(BENCH_PACKAGES), chance, bootstrap, paper)


def recompute_table(table: BenchRecord, bootstrap: int = 2000, paper: dict[str, Any] | None = None,
                    chance_config: str | Path | None = None) -> BenchRecord:
    """A bench table recomputed from the runs it records (`policies[*].runs`), keeping its config and
    package versions (those of the runs). Chance levels: computed from the config (and from the recipe
    of `chance_config`, the bench config it was built with, when given), else the recorded ones."""
    if not table.policies or not all(p.runs for p in table.policies.values()):
        raise ValueError("not a bench table with runs (policies[*].runs); give the output of `sharenas bench show DIR --json`")
    metrics = table.columns
    known_sources = table.bench_config().metrics
    sources = {c: known_sources.get(c, c) for c in metrics}  # a column of unknown source keeps its recorded chance level
    chance = column_chance(sources, _heldout(table.config), _trainer_chance(chance_config, table.config), table.chance)
    return summarize(table.policies, metrics, table.config, table.packages, chance, bootstrap, paper)


def summarize(policies: dict[str, BenchPolicy], metrics: list[str], config: BenchConfig | None, packages: dict[str, str],
              chance: dict[str, float | None], bootstrap: int = 2000, paper: dict[str, Any] | None = None) -> BenchRecord:
    """The bench table of `policies` (their runs; summaries they hold are not read): policies with their
    runs, summaries and differences from the reference paired by seed, and the means of the runs'
    best-epoch values where their curves scored every metric; the noise ceiling per metric
    (`noise_ceiling` is that of the ranking column); the length study; given the paper's tables, the
    direction check; the pooled seed std and the chance level of every metric."""
    runs = runs_frame(policies, metrics)
    summary = summary_frame(runs, metrics)
    bench = config or BenchConfig()
    paired = paired_records(runs, metrics, bench.reference)
    table_policies: dict[str, BenchPolicy] = {}
    for name, row in summary.iterrows():
        p = policies[name]
        table_policies[name] = BenchPolicy(
            int(row["params"]), p.policy, {c: finite(row[f"{c}_mean"]) for c in metrics}, {c: finite(row[f"{c}_std"]) for c in metrics},
            p.shared_sublayers, p.runs, best_means(p.runs, metrics) if any(r.best is not None for r in p.runs) else None, paired.get(name),
        )
    ceilings = {c: seed_agreement(runs, c, bootstrap=bootstrap) for c in metrics}
    return BenchRecord(
        table_policies, config, packages, ceilings[bench.ranking] if bench.ranking in ceilings else ceilings["val_loss"],
        entries=len(runs), train_wall_seconds=round(float(runs["train_seconds"].sum()), 1), score_precision=score_precision(policies),
        ranking=bench.ranking, noise_ceiling_by_metric=ceilings, length_study=length_study(policies, bootstrap=bootstrap),
        paper_check=None if paper is None else paper_check(summary, paper, bench.paper_zeroshot),
        reference=bench.reference, chance=chance, pooled_std={c: pooled_std(runs, c) for c in metrics},
    )


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


def paper_check(summary: pd.DataFrame, paper: dict[str, Any], zeroshot: str = "zeroshot_shapes") -> list[dict[str, Any]]:
    """For each ablation pair: the paper's zero-shot difference and ours in held-out loss (B - A, so
    positive = A better, as in the paper's A - B) with the seeds' standard error, and whether the
    directions agree; `clear` says whether ours is larger than twice its standard error. Our zero-shot
    difference A - B of column `zeroshot` is `tiny_{zeroshot}_diff`."""
    scores = paper_scores(paper)
    scores.setdefault("share-last-12", scores.get("msclip"))
    out = []
    for table, a, b, what in PAPER_PAIRS:
        if a not in summary.index or b not in summary.index or a not in scores or b not in scores:
            continue
        ra, rb = summary.loc[a], summary.loc[b]
        ours = float(rb["val_loss_mean"] - ra["val_loss_mean"])
        se = float(np.sqrt(ra["val_loss_std"] ** 2 / ra["seeds"] + rb["val_loss_std"] ** 2 / rb["seeds"]))
        zs = float(ra[f"{zeroshot}_mean"] - rb[f"{zeroshot}_mean"])
        theirs = float(scores[a] - scores[b])
        out.append({
            "table": table, "a": a, "b": b, "effect": what, "paper_zeroshot_diff": round(theirs, 2),
            "tiny_val_loss_gain": ours, "tiny_val_loss_gain_se": se, f"tiny_{zeroshot}_diff": zs,
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
