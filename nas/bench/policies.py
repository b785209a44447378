"""The bench's fixed policy set: named policies (presets or files) plus random policies of the supernet
space, stratified by how many sublayers they share so that the set spans the space."""
from __future__ import annotations

import random
from pathlib import Path

from search_spaces import SUBLAYERS, PolicyError, SharingPolicy, get_size, resolve_policy
from search_spaces.gate_space import SHARED_OPTION, SPECIFIC_OPTION, GateSpace

from nas.bench.config import LoadedBench


def shared_sublayers(policy: SharingPolicy) -> int:
    return sum(layer.is_shared(sub) for layer in policy.layers for sub in SUBLAYERS)


def specific_sublayers(policy: SharingPolicy) -> int:
    return len(policy.layers) * len(SUBLAYERS) - shared_sublayers(policy)


def in_space(space: GateSpace, policy: SharingPolicy) -> bool:
    try:
        space.from_policy(policy)
    except PolicyError:
        return False
    return True


def random_policies(space: GateSpace, count: int, strata: int, seed: int) -> list[SharingPolicy]:
    """`count` policies; policy j shares k sublayers with k uniform in stratum j mod `strata` of 0..L*4,
    at uniformly chosen positions, with early specialization and each fusion layer on or off by a coin."""
    rng = random.Random(seed)
    total = space.num_layer_gates
    edges = [round(total * i / strata) for i in range(strata + 1)]
    out = []
    for j in range(count):
        stratum = j % strata
        choices = [SPECIFIC_OPTION] * space.num_gates
        es = space.early_specialization and rng.random() < 0.5
        if space.early_specialization:
            choices[space.es_gate] = int(es)
        for g in range(len(space.fusion_layers)):
            choices[space.fusion_gate(g)] = int(rng.random() < 0.5)
        free = [g for g in range(total) if not (es and g < len(SUBLAYERS))]
        k = min(rng.randint(edges[stratum], max(edges[stratum], edges[stratum + 1] - 1)), len(free))
        for g in rng.sample(free, k):
            choices[g] = SHARED_OPTION
        out.append(space.to_policy(choices, name=f"random-{j + 1:02d}"))
    return out


def bench_policies(bench: LoadedBench) -> dict[str, SharingPolicy]:
    """Name -> policy, in bench order; a duplicate of an earlier policy (same layout) is an error."""
    cfg, size = bench.cfg, get_size(bench.cfg.space.size)
    out: dict[str, SharingPolicy] = {}
    for entry in cfg.policies:
        is_file = entry.endswith(".json")
        try:
            policy = resolve_policy(str(bench.resolve(entry)) if is_file else entry, size)
        except PolicyError as exc:
            raise PolicyError(f"policies: {entry}: {exc}") from None
        out[Path(entry).stem if is_file else entry] = policy
    space = cfg.space.build()
    for policy in random_policies(space, cfg.random.count, cfg.random.strata, cfg.random.seed):
        out[policy.name] = policy
    seen: dict[SharingPolicy, str] = {}
    for name, policy in out.items():
        if policy in seen:
            raise PolicyError(f"policies: {name} is the same policy as {seen[policy]}; list it once")
        seen[policy] = name
    return out
