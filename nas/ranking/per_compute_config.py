"""The typed configuration of `sharenas search per-compute`: which bench, which strategies, which
budgets (in standalone runs of the bench's recipe) and which search seeds."""
from __future__ import annotations

from dataclasses import dataclass, field

from trainer.compose import TrainerSections
from trainer.typed_config import ConfigError


@dataclass
class SupernetBudgetsSection:
    """The Gumbel supernet at each budget: one search per (setting, budget, seed), its training length
    sized to the budget, scored on the bench's policies with inherited weights."""

    settings: dict[str, list[str]] = field(default_factory=lambda: {"sweep": []})
    """Setting name -> `--set` overrides of the search config; at each budget the setting with the
    higher mean Kendall tau on the choice half is the one reported (`supernet-chosen`)."""
    budgets: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    """The budgets (standalone runs) at which the supernet is searched; the other budgets take the
    search of the largest of these that fits."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Search seeds (`train.seed` of the search)."""
    heldout_pairs: int = 1024
    """Each policy's path is scored on the first this many of the bench's held-out pairs (the loss
    alone): scoring is part of the strategy's cost."""
    step_cost: dict[str, float] = field(default_factory=lambda: {"sweep": 1.64})
    """Setting name -> the CPU cost of one supernet step over one standalone step (measured before);
    sizes the search's steps to the budget. The study records the cost each search really had."""

    def __post_init__(self) -> None:
        missing = sorted(set(self.settings) - set(self.step_cost))
        if missing:
            raise ConfigError(f"supernet.step_cost: no cost for setting {', '.join(missing)}")
        if not self.seeds or any(b <= 0 for b in self.budgets) or self.heldout_pairs < 2:
            raise ConfigError("supernet.seeds must be non-empty, supernet.budgets > 0 and supernet.heldout_pairs >= 2")


@dataclass
class HyperbandSection:
    """Optuna's Hyperband pruner for the TPE study (epochs of the bench's recipe are its resource)."""

    min_epochs: int = 1
    """Smallest resource a trial gets before it can be pruned."""
    reduction_factor: int = 3
    """Hyperband's eta."""


@dataclass
class PerComputeConfig(TrainerSections):
    """Every strategy's anytime regret against a bench, per compute budget in standalone runs of the
    bench's recipe. Paths are relative to this file. The trainer's sections are set over every config
    the study trains with (the bench config's recipe, which must stay the one its table was built with,
    the supernet and conflict searches); it sizes each supernet search's length to its budget itself."""

    bench: str = "../results/sharebench-tiny.json"
    """The bench table (`sharenas bench show --json`): the ground truth and the full-length trials."""
    bench_config: str = "../bench/sharebench-tiny.yaml"
    """The config the bench was built with: its recipe is the standalone run that is the unit of compute."""
    short: str = "../results/sharebench-tiny-short.json"
    """A table of short trials (own schedule) of the same policies: the fidelity of `random-short`."""
    search: str = "gumbel-sweep.yaml"
    """The Gumbel config of the supernet strategy."""
    conflict: str = "conflict.yaml"
    """The `search conflict` config of the conflict proxy."""
    budgets: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    """Compute budgets, in standalone runs of the bench's recipe (CPU seconds of one thread)."""
    observe_seed: int = 0
    """The bench seed whose runs a search observes (its trials are table look-ups of these runs)."""
    judge_seeds: list[int] = field(default_factory=lambda: [1])
    """The bench seeds that judge the returned policy (never the observed one)."""
    split_seed: int = 0
    """Seed of the split of the bench's policies into a choice half and a report half."""
    search_seeds: list[int] = field(default_factory=lambda: list(range(10)))
    """Seeds of the table-based strategies (random search, TPE)."""
    zero_cost_seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Seeds of the zero-cost proxies (initialization and batch): one search seed each."""
    hyperband: HyperbandSection = field(default_factory=HyperbandSection)
    """The TPE study's pruner."""
    supernet: SupernetBudgetsSection = field(default_factory=SupernetBudgetsSection)
    """The supernet strategy."""
    reference: str = "msclip"
    """The hand design the returned policies are compared with (paired by judge seed)."""

    def __post_init__(self) -> None:
        if self.observe_seed in self.judge_seeds or not self.judge_seeds:
            raise ConfigError(f"judge_seeds {self.judge_seeds} must be non-empty and leave out observe_seed {self.observe_seed}")
        if not self.budgets or any(b <= 0 for b in self.budgets) or len(self.search_seeds) < 2:
            raise ConfigError("budgets must be > 0 and search_seeds must hold at least 2 seeds")
