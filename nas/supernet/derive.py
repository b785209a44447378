"""Derive a policy from a trained supernet: the argmax policy and K policies sampled from the final
gates (or an evolutionary search, or each few-shot child's candidates) are scored with inherited
weights; the best one (within the budget, if any) becomes `arch.json` (schema `sharenas/arch/v2`,
the others listed in its provenance) and `policy.json`. `derive_policy` runs the derivation a
search config asks for."""
from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from search_spaces import ARCH_FILE, POLICY_FILE, ArchRecord, GateSpace, ParamCostModel, SharingPolicy, count_params, get_size
from trainer import atomic
from trainer.data import DataBundle
from trainer.evaluation.precision import SCORE_PRECISION
from trainer.typed_config import ConfigError, to_dict

from nas.scoring import ARCH_VAL_LOSS, Scorer, materialize
from nas.supernet.config import GumbelConfig
from nas.supernet.finetune import finetuned_standalone
from nas.supernet.gates import probabilities
from nas.supernet.model import Supernet
from nas.supernet.rundir import child_file, child_logits_file

@dataclass
class Candidate:
    source: str
    """"argmax", "sample-K" or "argmax-within-budget"."""
    choices: list[int]
    policy: SharingPolicy
    params: int
    within_budget: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "also_drawn_as": self.duplicates,
            "params": self.params,
            "within_budget": self.within_budget,
            **{k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()},
            "policy": self.policy.to_dict(),
        }


def sample_choices(logits: torch.Tensor, count: int, seed: int) -> list[list[int]]:
    """`count` independent draws of every gate from its final distribution (no noise temperature)."""
    generator = torch.Generator().manual_seed(seed)
    p_one = probabilities(logits.detach()).cpu()[:, 1]
    return [torch.bernoulli(p_one, generator=generator).long().tolist() for _ in range(count)]


def trim_to_budget(space: GateSpace, cost: ParamCostModel, choices: list[int], probs: torch.Tensor, target: int) -> list[int]:
    """Greedily give up the least confident parameter-costing choices (specific -> shared, on -> off)
    until the policy fits `target`; each flip is the one whose current option has the lowest probability."""
    choices = space.normalize(choices)
    while cost.exact(choices) > target:
        best = None
        for g in range(space.num_gates):
            flipped = space.flip(choices, g)
            if cost.exact(flipped) < cost.exact(choices):
                confidence = float(probs[g, choices[g]])
                if best is None or confidence < best[0]:
                    best = (confidence, flipped)
        if best is None:
            raise ValueError(f"no policy in the search space fits the budget of {target:,} parameters")
        choices = best[1]
    return choices


def candidates(
    space: GateSpace, cost: ParamCostModel, logits: torch.Tensor, samples: int, seed: int, budget: int | None
) -> list[Candidate]:
    """The argmax policy, `samples` sampled ones (duplicates merged) and, when no candidate fits the
    budget, the argmax policy trimmed to it."""
    drawn = [("argmax", logits.detach().argmax(dim=-1).tolist())]
    drawn += [(f"sample-{k}", c) for k, c in enumerate(sample_choices(logits, samples, seed), 1)]
    out: dict[tuple[int, ...], Candidate] = {}
    for source, choices in drawn:
        key = tuple(space.normalize(choices))
        if key in out:
            out[key].duplicates.append(source)
            continue
        params = cost.exact(list(key))
        fits = budget is None or params <= budget
        out[key] = Candidate(source, list(key), space.to_policy(list(key), name=f"gumbel-{source}"), params, fits)
    if budget is not None and not any(c.within_budget for c in out.values()):
        trimmed = trim_to_budget(space, cost, drawn[0][1], probabilities(logits.detach()).cpu(), budget)
        out[tuple(trimmed)] = Candidate(
            "argmax-within-budget", trimmed, space.to_policy(trimmed, name="gumbel-argmax-within-budget"), cost.exact(trimmed)
        )
    return list(out.values())


FineTune = Callable[[Supernet, SharingPolicy], nn.Module]
"""Builds a candidate's standalone model from the supernet's inherited weights and fine-tunes it."""


def score_candidates(supernet: Supernet, found: list[Candidate], scorer: Scorer, finetune: FineTune | None = None) -> Candidate:
    """Score every candidate with inherited weights; return the best eligible one (highest score)."""
    score_all(supernet, found, scorer, finetune)
    return best_candidate(found)


def score_all(supernet: Supernet, found: list[Candidate], scorer: Scorer, finetune: FineTune | None = None) -> None:
    """Each candidate's metrics with inherited weights, or after `finetune` (the inherited loss kept
    as `inherited_<loss>`, e.g. `inherited_arch_val_loss`)."""
    for candidate in tqdm(found, desc="derive", unit="policy", leave=False, disable=not sys.stderr.isatty()):
        supernet.fix(candidate.policy)
        metrics = scorer.measure(supernet, recalibrate=True)
        if finetune is not None:
            inherited = metrics[scorer.loss]
            metrics = scorer.measure(finetune(supernet, candidate.policy))
            metrics[f"inherited_{scorer.loss}"] = inherited
        candidate.metrics = metrics


def best_candidate(found: list[Candidate]) -> Candidate:
    return max((c for c in found if c.within_budget), key=lambda c: c.metrics["score"])


def _repair(space: GateSpace, cost: ParamCostModel, choices: list[int], budget: int | None, rng: random.Random) -> list[int]:
    """Flip random parameter-costing choices (specific -> shared, on -> off) until `choices` fits."""
    choices = space.normalize(choices)
    while budget is not None and cost.exact(choices) > budget:
        cheaper = [g for g in range(space.num_gates) if choices[g] == 1 and g not in space.forced(choices)]
        if not cheaper:
            raise ValueError(f"no policy in the search space fits the budget of {budget:,} parameters")
        flip = rng.choice(cheaper)
        choices = space.normalize([0 if g == flip else c for g, c in enumerate(choices)])
    return choices


def evolve(
    space: GateSpace, cost: ParamCostModel, logits: torch.Tensor, supernet: Supernet, scorer: Scorer,
    population: int, generations: int, mutation: float, seed: int, budget: int | None, finetune: FineTune | None = None,
) -> list[Candidate]:
    """Evolutionary search with inherited weights (as SPOS chooses after training its supernet):
    the gates' argmax and random policies, all within the budget; each generation keeps the best half
    and refills with mutants (each gate flipped with probability `mutation`) and uniform crossovers
    of two survivors. Returns every policy scored."""
    rng = random.Random(seed)
    scored: dict[tuple[int, ...], Candidate] = {}

    def add(choices: list[int], source: str, pool: list[tuple[int, ...]]) -> None:
        key = tuple(_repair(space, cost, choices, budget, rng))
        if key not in pool:
            pool.append(key)
            if key not in scored:
                scored[key] = Candidate(source, list(key), space.to_policy(list(key), name=f"gumbel-{source}"), cost.exact(list(key)))

    pool: list[tuple[int, ...]] = []
    add(logits.detach().argmax(dim=-1).tolist(), "argmax", pool)
    for attempt in range(50 * population):
        if len(pool) >= population:
            break
        add([rng.randint(0, 1) for _ in range(space.num_gates)], f"random-{attempt}", pool)
    for generation in range(generations + 1):
        score_all(supernet, [scored[k] for k in pool if not scored[k].metrics], scorer, finetune)
        if generation == generations:
            break
        parents = sorted(pool, key=lambda k: -scored[k].metrics["score"])[: max(2, population // 2)]
        pool = list(parents)
        for attempt in range(50 * population):
            if len(pool) >= population:
                break
            if rng.random() < 0.5:
                child = [1 - c if rng.random() < mutation else c for c in rng.choice(parents)]
            else:
                a, b = rng.sample(parents, 2)
                child = [x if rng.random() < 0.5 else y for x, y in zip(a, b)]
            add(child, f"gen{generation + 1}-{attempt}", pool)
    return list(scored.values())


def few_shot_candidates(
    space: GateSpace, cost: ParamCostModel, supernet: Supernet, scorer: Scorer, gate: str,
    children: dict[int, tuple[Path, Path]], samples: int, seed: int, budget: int | None,
    finetune: FineTune | None = None,
) -> list[Candidate]:
    """Candidates of a few-shot search: each child's (drawn from its gate logits, with the split
    `gate` fixed to the child's option) scored with that child's weights; `children` maps an option
    to its (weights file, logits file). A candidate that trimming to the budget moved to the other
    option is left to the other child."""
    g, found = space.gate_names().index(gate), []
    for option, (weights, logits_file) in children.items():
        supernet.load_state_dict(load_file(str(weights)))
        logits = torch.load(logits_file, weights_only=True).clone()
        logits[g] = torch.tensor([1e4, -1e4] if option == 0 else [-1e4, 1e4])
        mine = [c for c in candidates(space, cost, logits, samples, seed, budget) if c.choices[g] == option]
        for c in mine:
            c.source = f"{gate}={option}:{c.source}"
        score_all(supernet, mine, scorer, finetune)
        found += mine
    if not any(c.within_budget for c in found):
        raise ConfigError(f"no few-shot candidate fits search.budget {budget:,}; raise the budget")
    return found


def write_arch(
    out_dir: Path, winner: Candidate, found: list[Candidate], size: str, provenance: dict[str, Any], metrics: dict[str, float]
) -> ArchRecord:
    """Write `arch.json` and the bare `policy.json` (what `SharingPolicy.load` and `sharenas params` read)."""
    policy = SharingPolicy.from_dict({**winner.policy.portable(get_size(size)).to_dict(), "name": "gumbel-derived"})
    record = ArchRecord(size, policy, count_params(policy, size), metrics, {
        **provenance,
        "selected": winner.source,
        "candidates": [c.to_dict() for c in sorted(found, key=lambda c: -c.metrics.get("score", float("-inf")))],
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_with(out_dir / ARCH_FILE, record.save)
    atomic.write_with(out_dir / POLICY_FILE, policy.save)
    return record


def derive_policy(
    cfg: GumbelConfig, out: Path, supernet: Supernet, cost: ParamCostModel, logits: torch.Tensor, bundle: DataBundle,
    device: torch.device, search_seconds: float,
) -> ArchRecord:
    """Derive, score and write the policy of a finished search into `out` as its `derive:` section
    says (gates, evolution, or the few-shot children saved in `out`); returns the arch.json record."""
    d, space = cfg.derive, supernet.space
    size = space.size
    scorer = Scorer(
        bundle, materialize(bundle.arch, d.batch_size), device, ARCH_VAL_LOSS, by_zeroshot=d.metric == "zeroshot",
        calibration=materialize(bundle.train, d.batch_size, d.batch_size * d.bn_recalibration_batches) if d.bn_recalibration_batches else None,
        context_length=size.context_length,
    )
    budget = cfg.search.budget_params
    finetune = None
    if d.finetune_steps:
        t = cfg.train
        batches = materialize(bundle.train, t.batch_size, t.batch_size * d.finetune_steps, seed=t.seed + 2)
        finetune = partial(finetuned_standalone, batches=batches, lr=d.finetune_lr, optim=cfg.optim, device=device)
    gate = cfg.search.few_shot_gate
    if gate is not None:
        children = {option: (out / child_file(gate, option), out / child_logits_file(gate, option)) for option in (0, 1)}
        found = few_shot_candidates(space, cost, supernet, scorer, gate, children, d.samples, d.seed, budget, finetune)
        winner = best_candidate(found)
    elif d.method == "evolution":
        found = evolve(space, cost, logits, supernet, scorer, d.population, d.generations, d.mutation, d.seed, budget, finetune)
        winner = best_candidate(found)
    else:
        found = candidates(space, cost, logits, d.samples, d.seed, budget)
        winner = score_candidates(supernet, found, scorer, finetune)
    probs = probabilities(logits.detach()).cpu()
    provenance = {
        "search": "gumbel",
        "config": to_dict(cfg),
        "gate_probabilities": {name: float(probs[g, 1]) for g, name in enumerate(space.gate_names())},
        "selection": {"method": d.method, "metric": d.metric, "budget": budget, "inherited_weights": True,
                      "finetune_steps": d.finetune_steps, "score_precision": SCORE_PRECISION},
        "search_seconds": round(search_seconds, 2),
    }
    inherited = {f"inherited/{k}": v for k, v in winner.metrics.items() if math.isfinite(v)}
    return write_arch(out, winner, found, size.name, provenance, inherited)
