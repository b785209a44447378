"""A Pareto front from one trained supernet: derive a policy at each of a sweep of parameter
budgets, from the all-shared size to the all-specific size, and score each with inherited weights.
The front costs the derivations alone (the supernet was trained once).

At a budget the derivation starts from the gates' argmax: a policy over the budget gives up its
least confident costly choices (`trim_to_budget`); one under it takes the cheap gates' costly
options in order of their probability while they fit. Larger budgets therefore never derive
smaller policies.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from search_spaces import ARCH_FILE, ArchRecord, ParamCostModel
from search_spaces.gate_space import GateSpace
from trainer import atomic
from trainer.typed_config import CONFIG_FILE, ConfigError, load_config

from nas.pareto.front import hypervolume, pareto_mask
from nas.supernet.config import GumbelConfig
from nas.supernet.derive import Candidate, score_all, trim_to_budget
from nas.supernet.gates import probabilities
from nas.supernet.sweep_record import SweepBudget, SweepPolicy, SweepRecord

SWEEP_FILE = "sweep.json"


def sweep_budgets(cost: ParamCostModel, count: int) -> list[int]:
    """`count` budgets evenly spaced from the smallest to the largest policy of the space."""
    if count < 2:
        raise ConfigError(f"--budgets {count}: a sweep needs at least 2 budgets")
    low, high = cost.extremes()
    return [int(round(b)) for b in np.linspace(low, high, count)]


def grow_to_budget(space: GateSpace, cost: ParamCostModel, choices: list[int], probs: torch.Tensor, target: int) -> list[int]:
    """Take costly options (gate option 1: specific, on) of the gates that do not have them, most
    probable first, each one that keeps the policy within `target`."""
    choices = space.normalize(choices)
    for g in sorted(range(space.num_gates), key=lambda g: -float(probs[g, 1])):
        if choices[g] == 1:
            continue
        grown = space.normalize([1 if i == g else c for i, c in enumerate(choices)])
        if cost.exact(choices) < cost.exact(grown) <= target:
            choices = grown
    return choices


def budget_choices(space: GateSpace, cost: ParamCostModel, logits: torch.Tensor, budget: int) -> list[int]:
    probs = probabilities(logits.detach()).cpu()
    argmax = space.normalize(logits.detach().argmax(dim=-1).tolist())
    if cost.exact(argmax) > budget:
        return trim_to_budget(space, cost, argmax, probs, budget)
    return grow_to_budget(space, cost, argmax, probs, budget)


def budget_sweep(space: GateSpace, cost: ParamCostModel, logits: torch.Tensor, budgets: list[int]) -> list[tuple[int, Candidate]]:
    """(budget, candidate) per budget; a policy derived at several budgets is one candidate object."""
    found: dict[tuple[int, ...], Candidate] = {}
    out = []
    for budget in budgets:
        choices = budget_choices(space, cost, logits, budget)
        key = tuple(choices)
        if key not in found:
            found[key] = Candidate(f"budget-{budget}", choices, space.to_policy(choices, name=f"sweep-{len(found)}"), cost.exact(choices))
        out.append((budget, found[key]))
    return out


def run_sweep(run: Path, count: int = 8, reference: tuple[float, float] | None = None) -> SweepRecord:
    """Sweep the supernet of the finished search in `run`; writes and returns `run/sweep.json`:
    every budget's policy with its inherited scores, the front of inherited loss against parameters,
    and its hypervolume against `reference` (loss, parameters) when given."""
    from safetensors.torch import load_file

    from trainer.data import build_data
    from trainer.distributed import pick_device

    from nas.scoring import ARCH_VAL_LOSS, Scorer, materialize
    from nas.supernet.rundir import GATES_FILE, SUPERNET_FILE, build_supernet

    if not (run / CONFIG_FILE).is_file() or not (run / SUPERNET_FILE).is_file() or not (run / GATES_FILE).is_file():
        raise ConfigError(f"{run} is not a finished Gumbel search (needs {CONFIG_FILE}, {SUPERNET_FILE} and {GATES_FILE}); run `sharenas search gumbel` first")
    gates = json.loads((run / GATES_FILE).read_text())
    if gates.get("few_shot"):
        raise ConfigError(f"{run} is a few-shot search (two supernets); sweep a one-supernet search")
    cfg = load_config(run / CONFIG_FILE, GumbelConfig)
    start = time.perf_counter()
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    device = pick_device(cfg.train.device)
    supernet = build_supernet(cfg)
    supernet.load_state_dict(load_file(str(run / SUPERNET_FILE)))
    supernet.to(device)
    space, cost = supernet.space, supernet.cost_model()
    logits = torch.tensor([gates["gates"][name]["logits"] for name in space.gate_names()])
    d, size = cfg.derive, space.size
    bundle = build_data(cfg.data, size.image_size, size.context_length)
    scorer = Scorer(bundle, materialize(bundle.arch, d.batch_size), device, ARCH_VAL_LOSS,
                    calibration=materialize(bundle.train, d.batch_size, d.batch_size * d.bn_recalibration_batches) if d.bn_recalibration_batches else None,
                    context_length=size.context_length)
    swept = budget_sweep(space, cost, logits, sweep_budgets(cost, count))
    distinct = list({id(c): c for _, c in swept}.values())
    score_all(supernet, distinct, scorer)
    points = np.array([[c.metrics[ARCH_VAL_LOSS], c.params] for c in distinct])
    front = pareto_mask(points)
    arch = ArchRecord.load(run / ARCH_FILE) if (run / ARCH_FILE).is_file() else None
    record = SweepRecord(
        str(run), f"inherited {ARCH_VAL_LOSS} (the loss on the search's architecture split)",
        [SweepBudget(b, c.policy.name, c.params) for b, c in swept],
        [SweepPolicy(c.policy.name, c.params, c.metrics[ARCH_VAL_LOSS], bool(f), c.policy.to_dict()) for c, f in zip(distinct, front)],
        None if reference is None else {ARCH_VAL_LOSS: reference[0], "params": reference[1]},
        None if reference is None else hypervolume(points, reference),
        None if arch is None else arch.provenance.get("search_seconds"),
        round(time.perf_counter() - start, 2),
    )
    atomic.write_json(run / SWEEP_FILE, record.to_json())
    return record
