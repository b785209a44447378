"""The Optuna sampler and pruner a study's config names, and the trial order of a grid search."""
from __future__ import annotations

import random
import warnings
from typing import Any

import optuna

from search_spaces import LayoutSpace
from trainer.typed_config import ConfigError

from nas.discrete.config import OptunaSearchConfig


def build_sampler(cfg: OptunaSearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, grouped: the space is conditional), NSGA-II or random. Both TPE and NSGA-II
    honour the parameter budget, which each trial sets as a constraint."""
    kind = cfg.sampler_kind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.sampler.startup_trials, multivariate=True, group=True)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=cfg.sampler.population_size)
    # grid: every trial is enqueued with all its parameters, so the sampler is never asked.
    return optuna.samplers.RandomSampler(seed=seed)


def build_pruner(cfg: OptunaSearchConfig) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if cfg.pruner_kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    if cfg.pruner_kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource="auto", reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def grid_order(space: LayoutSpace, seed: int, limit: int) -> list[dict[str, Any]]:
    """Every parameter assignment of `space`, shuffled with `seed` so that a partial grid run still
    covers the space evenly; more than `limit` of them is a `ConfigError` (grid search is for small spaces)."""
    grid: list[dict[str, Any]] = []
    for params in space.assignments():
        if len(grid) == limit:
            raise ConfigError(
                f"sampler.kind: grid: the space has more than {limit} configurations; narrow `space` "
                "(e.g. layouts: [share_last], parallel_branch: false) or use tpe / nsga2 / random"
            )
        grid.append(params)
    random.Random(seed).shuffle(grid)
    return grid
