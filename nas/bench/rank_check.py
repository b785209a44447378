"""`sharenas search rank-check`: score proxies of policy quality against the bench's ground truth.

The ground truth is the mean held-out loss over seeds of every bench policy that lies in the
supernet's space (from the committed bench table: nothing is retrained). Proxies:
- `supernet`: the held-out loss of the policy's path through a searched supernet (inherited weights,
  BatchNorm statistics recalibrated per path), on the same held-out pairs the bench used;
- `params`: the total parameter count (more is better) and `specific_sublayers`: the number of
  modality-specific sublayers (more is better), the trivial proxies a search must beat;
- one per entry of `tables`: the mean held-out loss of another bench table over the same policies
  (e.g. short trials, the cost of a discrete search's objective).
Each gets Kendall tau, Spearman rho and top-k overlap with bootstrap intervals, and its tau as a
fraction of the noise ceiling (the seed-to-seed tau of the bench itself).
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from search_spaces import SUBLAYERS, PolicyError, SharingPolicy
from trainer.config import ConfigError, load_config, to_dict

from nas.bench.config import BenchConfig
from nas.bench.ranking import rank_agreement
from nas.gumbel_config import GumbelConfig

RESULT_FILE = "rank_check.json"
TRIVIAL = ("params", "specific_sublayers")


@dataclass
class RankCheckConfig:
    """`bench`: the bench table (JSON from `sharenas bench show --json`, relative to this file).
    `search`: the Gumbel config whose supernet is scored (searched into OUT/supernet unless
    `supernet_run` names a finished `search gumbel` output). `proxies`: which to score; `tables`:
    proxy name -> another bench table (relative to this file) scored by its mean held-out loss."""

    bench: str = "../results/sharebench-tiny.json"
    search: str = "gumbel.yaml"
    supernet_run: str | None = None
    proxies: list[str] = field(default_factory=lambda: ["supernet", *TRIVIAL])
    tables: dict[str, str] = field(default_factory=dict)
    top_k: int = 5
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.proxies) - {"supernet", *TRIVIAL})
        if unknown:
            raise ConfigError(f"proxies: unknown {', '.join(unknown)}; choose from supernet, {', '.join(TRIVIAL)}")
        if self.top_k < 1 or self.bootstrap < 100:
            raise ConfigError("top_k must be >= 1 and bootstrap >= 100")


def _relative(base: Path, value: str) -> Path:
    return Path(value) if Path(value).is_absolute() else base.parent / value


def read_bench_table(path: Path) -> dict[str, Any]:
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"bench: cannot read the bench table {path}: {exc}; build it with `sharenas bench show DIR --json`") from None
    if not isinstance(table, dict) or "policies" not in table or "noise_ceiling" not in table:
        raise ConfigError(f"bench: {path} is not a bench table (no policies / noise_ceiling); give the output of `sharenas bench show --json`")
    return table


def specific_sublayers(policy: SharingPolicy) -> int:
    return sum(not layer.is_shared(sub) for layer in policy.layers for sub in SUBLAYERS)


def supernet_scores(cfg: RankCheckConfig, config_path: Path, out: Path, bench_cfg: BenchConfig, policies: dict[str, SharingPolicy]) -> tuple[dict[str, dict[str, float]], str]:
    """Held-out loss (and zero-shot) of each policy's supernet path; returns the scores and the run used."""
    import torch
    from safetensors.torch import load_file

    from trainer.data import build_data, fresh_shapes
    from trainer.distributed import pick_device
    from trainer.loop import autocast_context

    from nas.derive import ARCH_FILE
    from nas.gumbel_search import CONFIG_FILE, SUPERNET_FILE, build_space, run_gumbel_search
    from nas.scoring import Scorer, materialize
    from nas.supernet import Supernet

    if cfg.supernet_run is not None:
        run = Path(cfg.supernet_run)
        if not (run / SUPERNET_FILE).is_file():
            raise ConfigError(f"supernet_run {run} holds no {SUPERNET_FILE}; give the --out of a finished `search gumbel`")
    else:
        run = out / "supernet"
        if not (run / ARCH_FILE).is_file():
            if run.exists():
                print(f"rank-check: {run} holds an unfinished search; searching again", file=sys.stderr)
                shutil.rmtree(run)
            run_gumbel_search(load_config(_relative(config_path, cfg.search), GumbelConfig), run, retrain=False)
    search_cfg = load_config(run / CONFIG_FILE, GumbelConfig)
    space = build_space(search_cfg)
    t, d, h = search_cfg.train, search_cfg.derive, bench_cfg.heldout
    if t.num_threads is not None:
        torch.set_num_threads(t.num_threads)
    device = pick_device(t.device)
    size = space.size
    bundle = build_data(search_cfg.data, size.image_size, size.context_length)
    scorer = Scorer(
        bundle, materialize(fresh_shapes(h.pairs, h.seed, size.image_size, size.context_length), h.batch_size), device, "val_loss",
        calibration=materialize(bundle.train, d.batch_size, d.batch_size * d.bn_recalibration_batches) if d.bn_recalibration_batches else None,
        autocast=lambda: autocast_context(device, t.precision), context_length=size.context_length,
    )
    supernet = Supernet(space)
    supernet.load_state_dict(load_file(str(run / SUPERNET_FILE)))
    supernet.to(device)
    scores = {}
    for name, policy in policies.items():
        supernet.fix(policy)
        scores[name] = scorer.measure(supernet, recalibrate=True)
    return scores, str(run)


def run_rank_check(config: str | Path, out: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    from nas.gumbel_search import build_space

    config, out = Path(config), Path(out)
    cfg = load_config(config, RankCheckConfig, list(overrides))
    bench_path = _relative(config, cfg.bench)
    table = read_bench_table(bench_path)
    bench_cfg = load_config(yaml.safe_load(table["config"]) if table.get("config") else {}, BenchConfig)
    search_cfg = load_config(_relative(config, cfg.search), GumbelConfig)
    space = build_space(search_cfg)
    policies: dict[str, SharingPolicy] = {}
    skipped = []
    for name, entry in table["policies"].items():
        policy = SharingPolicy.from_dict(entry["policy"])
        try:
            space.from_policy(policy)
        except PolicyError:
            skipped.append(name)
            continue
        policies[name] = policy
    if len(policies) < 3:
        raise ConfigError(f"bench: only {len(policies)} of its policies lie in the search space of {cfg.search}; a rank check needs 3")
    out.mkdir(parents=True, exist_ok=True)
    names = list(policies)
    truth = [-table["policies"][n]["mean"]["val_loss"] for n in names]
    proxy_scores: dict[str, list[float]] = {}
    record: dict[str, dict[str, Any]] = {n: {"truth_val_loss": -v, "params": table["policies"][n]["params"]} for n, v in zip(names, truth)}
    trivial: dict[str, Callable[[str], float]] = {
        "params": lambda n: float(table["policies"][n]["params"]),
        "specific_sublayers": lambda n: float(specific_sublayers(policies[n])),
    }
    supernet_run = None
    for proxy in cfg.proxies:
        if proxy == "supernet":
            scores, supernet_run = supernet_scores(cfg, config, out, bench_cfg, policies)
            proxy_scores[proxy] = [scores[n]["score"] for n in names]
            for n in names:
                record[n]["supernet"] = {k: scores[n][k] for k in ("val_loss", "zeroshot")}
        else:
            proxy_scores[proxy] = [trivial[proxy](n) for n in names]
            for n, value in zip(names, proxy_scores[proxy]):
                record[n][proxy] = value
    for proxy, other_path in cfg.tables.items():
        other = read_bench_table(_relative(config, other_path))["policies"]
        missing = [n for n in names if n not in other]
        if missing:
            raise ConfigError(f"tables.{proxy}: {other_path} lacks {', '.join(missing[:3])}; it must hold every policy of the bench")
        proxy_scores[proxy] = [-other[n]["mean"]["val_loss"] for n in names]
        for n in names:
            record[n][proxy] = other[n]["mean"]["val_loss"]
    ceiling = table["noise_ceiling"]
    proxies = {}
    for proxy, scores in proxy_scores.items():
        agreement = rank_agreement(truth, scores, cfg.top_k, cfg.bootstrap, cfg.seed)
        agreement["top5_overlap"] = agreement.get(f"top{cfg.top_k}_overlap")
        agreement["ratio_to_ceiling"] = agreement["kendall"] / ceiling["kendall"] if ceiling.get("kendall") else None
        proxies[proxy] = agreement
    result = {
        "bench": str(bench_path), "truth": "mean held-out loss over seeds (lower is better)", "n": len(names),
        "skipped_outside_space": skipped, "supernet_run": supernet_run, "noise_ceiling": ceiling, "proxies": proxies,
        "policies": record, "config": to_dict(cfg),
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result
