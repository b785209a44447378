"""Anytime traces of search strategies over a tabular bench: what each strategy would return after
spending a given compute, in standalone runs of the bench's recipe (NAS-Bench-201 practice: a trial
of a policy the table holds is a look-up of its recorded run, charged the run's cost).

A trace is a list of (cumulative cost, incumbent policy) events; `incumbent_at` reads off the policy
a strategy returns at a budget (None before it has any). Strategies:
- `random_trace`: random search over full runs (1 run per trial), or over short runs (`cost` runs
  each), returning the best observed loss;
- `tpe_trace`: Optuna's TPE over a policy's features (shared layers per sublayer kind, early
  specialization, parallel branch; each sample is mapped to the nearest untried policy), on short
  runs, or with Hyperband pruning on the per-epoch losses of the recorded run (one epoch = 1/epochs
  of a run), returning the best policy among those trained furthest;
- `proxy_trace`: a proxy's best policy, available once its cost is spent.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from search_spaces import SUBLAYERS, SharingPolicy

from nas.ranking.per_compute_config import HyperbandSection

Trace = list[tuple[float, str]]


def incumbent_at(trace: Trace, budget: float, tolerance: float = 1e-9) -> str | None:
    """The policy a strategy returns once it has spent at most `budget`."""
    best = None
    for cost, policy in trace:
        if cost > budget + tolerance:
            break
        best = policy
    return best


def halves(names: Sequence[str], seed: int, keep: str) -> tuple[list[str], list[str]]:
    """The policies split at random (`seed`) into a choice half and a report half; `keep` (the
    reference) is in the report half."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    choose, report = sorted(order[: len(order) // 2]), sorted(order[len(order) // 2:])
    if keep in choose:
        swap = report[0] if report[0] != keep else report[1]
        choose = sorted([swap, *(n for n in choose if n != keep)])
        report = sorted([keep, *(n for n in report if n != swap)])
    return choose, report


def random_trace(candidates: Sequence[str], loss: dict[str, float], cost: float, seed: int) -> Trace:
    """Random search without repetition: each trial costs `cost` runs and observes `loss`."""
    order = list(candidates)
    random.Random(seed).shuffle(order)
    trace, best = [], None
    for i, name in enumerate(order, 1):
        if best is None or loss[name] < loss[best]:
            best = name
        trace.append((i * cost, best))
    return trace


def proxy_trace(candidates: Sequence[str], score: dict[str, float], cost: float) -> Trace:
    """The candidate with the highest proxy score (ties: first by name), once `cost` is spent."""
    return [(cost, max(sorted(candidates), key=lambda n: score[n]))]


def features(policy: SharingPolicy) -> list[float]:
    """Shared layers per sublayer kind (as a fraction of the layers), early specialization, parallel branch."""
    layers = len(policy.layers)
    shared = [sum(layer.is_shared(sub) for layer in policy.layers) / layers for sub in SUBLAYERS]
    return [*shared, float(policy.early_specialization), float(policy.parallel_branch is not None)]


def tpe_trace(
    candidates: dict[str, SharingPolicy], curves: dict[str, list[float]], seed: int, max_cost: float,
    hyperband: HyperbandSection | None = None, curve_cost: float = 1.0, startup_trials: int = 4,
) -> Trace:
    """TPE over the losses `curves` (policy -> loss after epoch 1..E of its recorded run, which costs
    `curve_cost` runs in all), with a Hyperband pruner on the epochs when given; stops at `max_cost`
    runs or when every candidate was tried."""
    import optuna

    epochs = len(next(iter(curves.values())))
    feats = {n: features(p) for n, p in candidates.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.NopPruner() if hyperband is None else optuna.pruners.HyperbandPruner(
        min_resource=hyperband.min_epochs, max_resource=epochs, reduction_factor=hyperband.reduction_factor)
    # a fixed study name: Hyperband assigns trials to brackets by a hash of it (a generated name would not repeat)
    study = optuna.create_study(study_name=f"tpe-seed{seed}", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
                                pruner=pruner)
    layers = len(next(iter(candidates.values())).layers)
    untried, trained = set(candidates), {}  # policy -> (epochs observed, last loss)
    trace, spent = [], 0  # epochs trained so far, each costing curve_cost / epochs runs
    limit = max_cost * epochs / curve_cost - 1e-9
    while untried and spent < limit:
        trial = study.ask()
        wanted = [trial.suggest_int(sub, 0, layers) / layers for sub in SUBLAYERS]
        wanted += [float(trial.suggest_categorical("early_specialization", [False, True])),
                   float(trial.suggest_categorical("parallel_branch", [False, True]))]
        name = min(sorted(untried), key=lambda n: sum(abs(a - b) for a, b in zip(feats[n], wanted)))
        untried.discard(name)
        for epoch in range(1, epochs + 1):
            spent += 1
            trained[name] = (epoch, curves[name][epoch - 1])
            trial.report(curves[name][epoch - 1], epoch)
            trace.append((spent * curve_cost / epochs, min(trained, key=lambda n: (-trained[n][0], trained[n][1]))))
            if spent >= limit:
                break  # the budget is spent: the trial stops where it is
            if epoch < epochs and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, curves[name][-1])
    return trace
