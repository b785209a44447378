"""Cost of the supernet budget sweep's front in standalone runs of a bench's recipe, both timed in one process.

`bench front` divides the sweep's recorded seconds by the bench's mean run, but the two were timed on
different days under different loads. Here, one after the other on one CPU thread: a standalone run of
the bench's recipe (`--policy`, seed 0), the whole search (`search gumbel`, derive included) and the
sweep (`search sweep`), and the standalone run again, so that a drift of the machine's load shows as a
difference of the two runs. Prints `sweep ratio = (search + sweep) / standalone run` (the goal is <= 3).

    python benchmarks/sweep_cost.py --search experiments/tiny/gumbel-sweep.yaml --bench experiments/bench/sharebench-tiny.yaml
    python benchmarks/sweep_cost.py --search experiments/real/gumbel-sweep.yaml --bench experiments/bench/sharebench-real-tiny.yaml
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def standalone_seconds(bench_config: str, policy: str, out: Path) -> float:
    """Wall seconds of `train` on the bench's recipe, as `bench build` times an entry."""
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.typed_config import load_config

    from nas.bench.build import policy_recipe
    from nas.bench.config import load_bench_config

    cfg = load_config(policy_recipe(load_bench_config(bench_config), policy, seed=0), TrainConfig)
    start = time.perf_counter()
    train(cfg, out)
    return time.perf_counter() - start


def sweep_seconds(search_config: str, budgets: int, overrides: list[str], out: Path) -> tuple[float, float]:
    """Wall seconds of the search and of the sweep of its supernet."""
    from trainer.typed_config import load_config

    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search
    from nas.supernet.sweep import run_sweep

    cfg = load_config(search_config, GumbelConfig, overrides)
    start = time.perf_counter()
    run_gumbel_search(cfg, out, retrain=False)
    searched = time.perf_counter()
    run_sweep(out, budgets)
    return searched - start, time.perf_counter() - searched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", required=True, help="the sweep's Gumbel config, e.g. experiments/tiny/gumbel-sweep.yaml")
    parser.add_argument("--bench", required=True, help="the bench whose recipe one standalone run trains")
    parser.add_argument("--policy", default="msclip", help="the standalone run's policy: preset or .json")
    parser.add_argument("--budgets", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a value of the --search config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        before = standalone_seconds(args.bench, args.policy, Path(tmp) / "before")
        search, sweep = sweep_seconds(args.search, args.budgets, args.overrides, Path(tmp) / "search")
        after = standalone_seconds(args.bench, args.policy, Path(tmp) / "after")
    run = (before + after) / 2
    print(f"standalone run ({args.policy}, {args.bench}'s recipe): {before:.1f} s before, {after:.1f} s after the search")
    print(f"search (weights + gates + derive): {search:.1f} s; sweep of {args.budgets} budgets: {sweep:.1f} s")
    print(f"sweep ratio ((search + sweep) / standalone run): {(search + sweep) / run:.2f} (goal <= 3)")


if __name__ == "__main__":
    main()
