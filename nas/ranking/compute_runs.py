"""The measured side of `sharenas search per-compute`: what a strategy cannot look up in the bench table.

- one standalone run of the bench's recipe (the reference policy, the observed seed): the unit of
  compute;
- the zero-cost proxies of every bench policy in the supernet's space, one search seed each;
- the conflict search (its cosines score every policy);
- one Gumbel search per (setting, budget, seed), its steps sized to the budget, each bench policy
  then scored on its path with inherited weights.

Costs are CPU seconds of this process (`time.process_time`): every step runs on one thread, and on a
busy machine CPU seconds stretch far less than wall seconds (which grow with the load), though cache
and memory contention still move them (identical supernet searches differed by up to 40% here). Everything is cached in
the output directory: an interrupted study goes on from the last finished step.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from search_spaces import ARCH_FILE, SharingPolicy
from trainer import atomic
from trainer.compose import TRAINER_SECTIONS
from trainer.typed_config import CONFIG_FILE, ConfigError, config_diff, load_config

from nas.bench.config import load_bench_config
from nas.bench.record import BenchRecord
from nas.ranking.per_compute_config import PerComputeConfig

MEASURED_FILE = "measured.json"


@dataclass
class SupernetRecord:
    """One Gumbel search of the study and its inherited scores."""

    setting: str
    """The setting's name (`supernet.settings`)."""
    budget: float
    """The budget (standalone runs) its steps were sized to."""
    seed: int
    """Its `train.seed`."""
    steps: int
    """Its weight steps."""
    overrides: list[str]
    """Every `--set` it ran with."""
    resumed: bool
    """Whether it went on from an interrupted search (its CPU seconds then miss the interrupted part)."""
    search_cpu_seconds: float
    """The search's CPU seconds."""
    score_cpu_seconds_per_policy: float
    """CPU seconds of scoring one policy's path with inherited weights (BatchNorm recalibrated)."""
    inherited: dict[str, float]
    """Bench policy -> held-out loss of its path with inherited weights, on the first
    `supernet.heldout_pairs` of the bench's held-out pairs."""


@dataclass
class Measured:
    """Everything the study measured, in CPU seconds of one thread."""

    standalone_cpu_seconds: float | None = None
    """One standalone run of the bench's recipe (the unit of compute)."""
    standalone_steps: int | None = None
    """Its optimizer steps."""
    zero_cost: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Zero-cost seed -> policy -> {grad_norm, snip, cpu_seconds}."""
    conflict: dict[str, float] = field(default_factory=dict)
    """Policy -> the conflict proxy's score."""
    conflict_cpu_seconds: float | None = None
    """The conflict search's cost."""
    supernet: list[SupernetRecord] = field(default_factory=list)
    """One record per Gumbel search."""

    @classmethod
    def load(cls, path: Path) -> Measured:
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        raw["supernet"] = [SupernetRecord(**r) for r in raw.get("supernet", [])]
        return cls(**raw)

    def save(self, path: Path) -> None:
        atomic.write_json(path, asdict(self))


def relative_path(config: Path, value: str) -> Path:
    return Path(value) if Path(value).is_absolute() else config.parent / value


def _cpu(fn, *args, **kwargs):
    start = time.process_time()
    result = fn(*args, **kwargs)
    return result, time.process_time() - start


def space_policies(table: BenchRecord, search_cfg) -> dict[str, SharingPolicy]:
    """The bench policies that lie in the supernet's space, by name."""
    from nas.bench.policies import in_space
    from nas.supernet.rundir import build_space

    space = build_space(search_cfg)
    policies = {n: SharingPolicy.from_dict(e.policy) for n, e in table.policies.items()}
    return {n: p for n, p in policies.items() if in_space(space, p)}


def measure(config: Path, out: Path, overrides: list[str] = ()) -> Measured:
    """Run (or go on with) every measured step of the study `config` into `out`."""
    import torch

    from trainer.config import TrainConfig
    from trainer.loop import train

    from nas.bench.build import policy_recipe
    from nas.conflict.config import ConflictConfig
    from nas.conflict.search import conflict_scores
    from nas.ranking.rank_check import read_bench_table
    from nas.ranking.supernet_proxy import searched_run
    from nas.supernet.config import GumbelConfig
    from nas.supernet.rundir import SEARCH_STATE_FILE
    from nas.zero_cost import zero_cost_scores

    cfg = load_config(config, PerComputeConfig, list(overrides))
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MEASURED_FILE
    m = Measured.load(path)
    table = read_bench_table(relative_path(config, cfg.bench))
    bench = load_bench_config(relative_path(config, cfg.bench_config), cfg.sets())
    built = table.bench_config()
    differ = [key for key in config_diff(built, bench.cfg) if key.split(".")[0] in ("heldout", *TRAINER_SECTIONS)]
    if differ:
        raise ConfigError(f"bench_config: {cfg.bench_config} is not the config {cfg.bench} was built with ({', '.join(differ)} differ)")
    search_cfg = load_config(relative_path(config, cfg.search), GumbelConfig, cfg.sets(GumbelConfig))
    policies = space_policies(table, search_cfg)
    if m.standalone_cpu_seconds is None:
        recipe = load_config(policy_recipe(bench, cfg.reference, seed=cfg.observe_seed), TrainConfig)
        print(f"per-compute: timing one standalone run ({cfg.reference}, seed {cfg.observe_seed})", file=sys.stderr)
        result, m.standalone_cpu_seconds = _cpu(train, recipe, out / "standalone")
        m.standalone_steps = result.step
        m.save(path)
    for seed in cfg.zero_cost_seeds:
        if str(seed) not in m.zero_cost:
            scores = zero_cost_scores(policies, bench.recipe.model.size, bench.recipe.data, bench.recipe.train.batch_size, [seed])
            m.zero_cost[str(seed)] = {n: {"grad_norm": s.grad_norm, "snip": s.snip, "cpu_seconds": s.cpu_seconds} for n, s in scores.items()}
            m.save(path)
    if m.conflict_cpu_seconds is None:
        conflicts, m.conflict_cpu_seconds = _cpu(conflict_scores, relative_path(config, cfg.conflict), out / "conflict", cfg.sets(ConflictConfig))
        m.conflict = {n: conflicts.score(p) for n, p in policies.items()}
        m.save(path)
    s = cfg.supernet
    done = {(r.setting, r.budget, r.seed) for r in m.supernet}
    for budget in sorted(s.budgets):
        for seed in s.seeds:
            for setting, sets in s.settings.items():
                if (setting, budget, seed) in done:
                    continue
                steps = max(1, round(budget * m.standalone_steps / s.step_cost[setting]))
                epochs = steps / (m.standalone_steps / bench.recipe.train.epochs)
                run_sets = [*sets, "train.epochs=null", f"train.steps={steps}", f"train.seed={seed}",
                            f"search.warmup_epochs={epochs / 6:.4f}", "derive.samples=0", "train.progress=false"]
                run = out / "supernet" / f"{setting}-b{budget:g}-s{seed}"
                resumed = (run / SEARCH_STATE_FILE).is_file() and not (run / ARCH_FILE).is_file()
                _, search_cpu = _cpu(searched_run, run, load_config(relative_path(config, cfg.search), GumbelConfig,
                                                                    [*cfg.sets(GumbelConfig), *run_sets]))
                scores, score_cpu = _cpu(inherited_losses, run, built.heldout, s.heldout_pairs, policies)
                m.supernet.append(SupernetRecord(
                    setting=setting, budget=budget, seed=seed, steps=steps, overrides=run_sets, resumed=resumed,
                    search_cpu_seconds=search_cpu, score_cpu_seconds_per_policy=score_cpu / len(policies),
                    inherited=scores,
                ))
                m.save(path)
                print(f"per-compute: supernet {setting} budget {budget:g} seed {seed}: {search_cpu:.0f} CPU s "
                      f"({search_cpu / m.standalone_cpu_seconds:.2f} runs)", file=sys.stderr)
    return m


def inherited_losses(run: Path, heldout, pairs: int, policies: dict[str, SharingPolicy]) -> dict[str, float]:
    """The held-out loss of each policy's path through the supernet of the finished search `run`
    (BatchNorm recalibrated per path), on the first `pairs` of the bench's held-out pairs; the loss
    alone, without the zero-shot scoring the rank check adds."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from trainer.data import build_data
    from trainer.distributed import pick_device

    from nas.bench.build import held_out_pairs
    from nas.scoring import Scorer, materialize
    from nas.supernet.config import GumbelConfig
    from nas.supernet.rundir import build_supernet, weights_file

    cfg = load_config(run / CONFIG_FILE, GumbelConfig)
    device = pick_device(cfg.train.device)
    supernet = build_supernet(cfg).to(device)
    size, d = supernet.space.size, cfg.derive
    bundle = build_data(cfg.data, size.image_size, size.context_length)
    section = replace(heldout, pairs=min(pairs, heldout.pairs))
    scorer = Scorer(bundle, materialize(held_out_pairs(section, bundle, size), section.batch_size), device, "val_loss",
                    calibration=materialize(bundle.train, d.batch_size, d.batch_size * d.bn_recalibration_batches) if d.bn_recalibration_batches else None,
                    context_length=size.context_length)
    out, loaded = {}, None
    for name, policy in policies.items():
        weights = weights_file(run, policy, supernet.space)
        if weights != loaded:
            supernet.load_state_dict(load_file(str(weights)))
            loaded = weights
        supernet.fix(policy)
        out[name] = scorer.measure(supernet, recalibrate=True, zeroshot=False)["val_loss"]
    return out
