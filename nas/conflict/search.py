"""`sharenas search conflict`: one brief training of `share-all`, then per-sublayer image/text gradient
cosines, then the policy that makes the most conflicting sublayers specific within the budget.

Run directory: share-all/ (the training run), conflict.json (the cosines, most conflicting first,
and the settings they were measured with), arch.json + policy.json (the derived policy).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from search_spaces import ARCH_FILE, POLICY_FILE, SUBLAYERS, ArchRecord, LayerSharing, SharingPolicy, count_params, get_size
from search_spaces.model.transformer import SUBLAYER_MODULES
from trainer import atomic
from trainer.config import ModelConfig, TrainConfig
from trainer.rundir import RunDir
from trainer.typed_config import ConfigError, load_config, to_dict

from nas.conflict.config import ConflictConfig

CONFLICT_FILE = "conflict.json"
TRAIN_DIR = "share-all"


@dataclass
class Conflicts:
    """Gradient cosine per sublayer (`"L03.attn"`), and what measuring it cost."""

    cosines: dict[str, float]
    seconds: float

    def score(self, policy: SharingPolicy) -> float:
        """Proxy of a policy's quality: the summed conflict (minus cosine) of the sublayers it makes
        specific; early specialization and the parallel branch do not enter it."""
        return sum(
            -self.cosines[f"L{i:02d}.{sub}"]
            for i, layer in enumerate(policy.layers) for sub in SUBLAYERS
            if not layer.is_shared(sub) and f"L{i:02d}.{sub}" in self.cosines
        )


def measure_conflicts(cfg: ConflictConfig, out: Path) -> Conflicts:
    """Train `share-all` into OUT/share-all (resumed when interrupted) and measure the cosines; cached
    in OUT/conflict.json for the same settings."""
    import torch

    from search_spaces import build_model
    from trainer.checkpoint import load_model_weights
    from trainer.data import build_data
    from trainer.distributed import pick_device
    from trainer.evaluation.grad_conflict import modality_gradient_cosines
    from trainer.loop import train

    from nas.scoring import materialize

    settings = json.loads(json.dumps(to_dict(cfg)))
    settings["conflict"] = {k: settings["conflict"][k] for k in ("batches", "batch_size")}
    cache = out / CONFLICT_FILE
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("settings") == settings:
            return Conflicts(saved["cosines"], saved["seconds"])
    start = time.perf_counter()
    train_cfg = TrainConfig(model=ModelConfig(policy="share-all", size=cfg.size), data=cfg.data, optim=cfg.optim, train=cfg.train, eval=cfg.eval)
    run = out / TRAIN_DIR
    train(train_cfg, run, resume=(run / "checkpoints").is_dir())
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    device = pick_device(cfg.train.device)
    size = get_size(cfg.size)
    model = build_model("share-all", size)
    load_model_weights(model, run)
    model.to(device).eval()
    c = cfg.conflict
    bundle = build_data(cfg.data, size.image_size, size.context_length)
    batches = materialize(bundle.train, c.batch_size, c.batch_size * c.batches, seed=1)
    groups = {
        f"L{i:02d}.{sub}": list(getattr(block, SUBLAYER_MODULES[sub]).shared.parameters())
        for i, block in enumerate(model.blocks) for sub in SUBLAYERS
    }
    cosines = modality_gradient_cosines(model, batches, groups, device)
    ordered = dict(sorted(cosines.items(), key=lambda kv: kv[1]))
    seconds = round(time.perf_counter() - start, 2)
    atomic.write_json(cache, {"settings": settings, "cosines": ordered, "seconds": seconds})
    return Conflicts(ordered, seconds)


def conflict_policy(conflicts: Conflicts, cfg: ConflictConfig) -> SharingPolicy:
    """Most conflicting first, make a sublayer specific when the policy stays within the budget (and
    under `max_specific` / `threshold`); the rest stay shared."""
    c, size = cfg.conflict, get_size(cfg.size)
    specific: set[str] = set()

    def policy_of(names: set[str]) -> SharingPolicy:
        layers = tuple(
            LayerSharing(**{sub: "specific" if f"L{i:02d}.{sub}" in names else "shared" for sub in SUBLAYERS}) for i in range(size.layers)
        )
        return SharingPolicy(layers, name="conflict-derived")

    budget = c.budget_params
    if budget is not None and count_params(policy_of(set()), size).total > budget:
        raise ConfigError(f"conflict.budget {budget:,} is below share-all's parameter count; raise it")
    for name, cosine in conflicts.cosines.items():
        if name.split(".")[1] not in c.sublayers or (c.threshold is not None and cosine >= c.threshold):
            continue
        if c.max_specific is not None and len(specific) >= c.max_specific:
            break
        trial = specific | {name}
        if budget is None or count_params(policy_of(trial), size).total <= budget:
            specific = trial
    return policy_of(specific)


def run_conflict_search(cfg: ConflictConfig, out: str | Path) -> ArchRecord:
    """Measure the conflicts (or reuse them) and write the derived policy; returns arch.json's record."""
    run_dir = RunDir(out, "conflict search", markers=())
    with run_dir.lock():
        run_dir.open(cfg, "auto")  # the measurements of a search with the same config are reused
        return _search(cfg, run_dir.path)


def _search(cfg: ConflictConfig, out: Path) -> ArchRecord:
    print(f"conflict search: share-all at size {cfg.size}, then gradient cosines over {cfg.conflict.batches} batches -> {out}", file=sys.stderr)
    conflicts = measure_conflicts(cfg, out)
    policy = conflict_policy(conflicts, cfg)
    record = ArchRecord(cfg.size, policy, count_params(policy, cfg.size), provenance={
        "search": "conflict", "config": to_dict(cfg), "budget": cfg.conflict.budget_params, "search_seconds": conflicts.seconds,
        "most_conflicting": dict(list(conflicts.cosines.items())[:10]),
    })
    atomic.write_with(out / ARCH_FILE, record.save)
    atomic.write_with(out / POLICY_FILE, policy.save)
    return record


def conflict_scores(config: Path, out: Path, overrides: list[str] = ()) -> Conflicts:
    """The cosines of the conflict search `config` (with `--set` `overrides`) measured into `out` (the rank check's proxy)."""
    return measure_conflicts(load_config(config, ConflictConfig, overrides), out)
