"""How fast does the supernet learn under each way of sampling its weight paths?

Trains the supernet of `experiments/tiny/gumbel.yaml` at the standalone recipe (`RECIPE`) with
weight steps only, and after each epoch measures the held-out loss of one fixed path, `msclip`'s, on
fresh shapes pairs. The reference is a standalone `msclip` trained by the trainer with the same
recipe, data and seed, scored after each epoch on the same held-out batches. Variants: the `msclip`
path only (the supernet machinery against standalone training), two half-batch `msclip` paths (the
cost of halving the batch), only the two extreme paths, fair random paths (the search's `fairness:
strict`, with and without the sandwich's extreme paths) with and without the early-specialization /
fusion gates, each with and without weight entanglement.

    python scripts/supernet_learning.py --out experiments/results/supernet-learning.json
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from search_spaces import build_model, get_preset, get_size
from trainer import atomic
from trainer.checkpoint import list_checkpoints, load_model_weights
from trainer.config import ModelConfig, TrainConfig
from trainer.data import build_data, fresh_shapes
from trainer.distributed import World
from trainer.evaluation.chance import contrastive_chance
from trainer.evaluation.heldout import held_out_loss, materialize
from trainer.loop import train
from trainer.sampler import BatchPlan
from trainer.typed_config import load_config

from nas.supernet.config import GumbelConfig
from nas.supernet.search import GumbelSearch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "tiny" / "gumbel.yaml"
HELDOUT_PAIRS, HELDOUT_SEED, HELDOUT_BATCH = 1024, 123, 128
RECIPE = ["optim.lr=5e-4", "optim.final_lr=5e-5", "optim.warmup_epochs=0.5", "train.epochs=2", "train.progress=false",
          "search.warmup_epochs=10", "search.diagnostics_batch=0", "search.sandwich=false", "search.few_shot_gate=null"]
NO_EXTRAS = ["space.early_specialization=false", "space.fusion_layers=[]"]
VARIANTS: dict[str, tuple[list[str], str]] = {
    "msclip path only": (["search.fairness=none"], "msclip"),
    "two half-batch msclip paths": (["search.fairness=none"], "msclip2"),
    "share-all + all-specific paths": (["search.fairness=none"], "extremes"),
    "fair random paths": ([], "fair"),
    "fair random paths + sandwich": (["search.sandwich=true"], "fair"),
    "fair random paths, entangled": (["space.entangle=true"], "fair"),
    "fair random paths, no ES / fusion gates": (NO_EXTRAS, "fair"),
    "fair random paths, no ES / fusion gates, entangled": ([*NO_EXTRAS, "space.entangle=true"], "fair"),
}


def standalone(heldout) -> list[float]:
    """Held-out loss after each epoch of `msclip` trained by the trainer on the search config's own
    data, optimizer, schedule, batch and seed (checkpointed once an epoch)."""
    cfg = load_config(CONFIG, GumbelConfig, RECIPE)
    torch.set_num_threads(1)
    size, t = get_size(cfg.space.size), cfg.train
    spe = BatchPlan(len(build_data(cfg.data, size.image_size, size.context_length).train), t.batch_size, t.accum_steps, 1, t.seed).steps_per_epoch
    train_cfg = TrainConfig(
        model=ModelConfig(policy="msclip", size=cfg.space.size), data=cfg.data, optim=cfg.optim,
        train=dataclasses.replace(t, checkpoint_every=spe, keep_checkpoints=t.epochs), eval=dataclasses.replace(cfg.eval, every_epochs=None),
    )
    model, losses = build_model(get_preset("msclip", size), size), []
    with TemporaryDirectory() as tmp:
        train(train_cfg, Path(tmp) / "run")
        for checkpoint in list_checkpoints(Path(tmp) / "run"):
            load_model_weights(model, checkpoint)
            losses.append(held_out_loss(model, heldout, torch.device("cpu")))
            print(f"standalone msclip: {checkpoint.name} held-out loss {losses[-1]:.3f}", flush=True)
    return losses


def run(name: str, sets: list[str], paths: str, heldout) -> dict:
    cfg = load_config(CONFIG, GumbelConfig, RECIPE + sets)
    torch.set_num_threads(1)
    with TemporaryDirectory() as tmp:
        search = GumbelSearch(cfg, Path(tmp) / "run", World())
    space, msclip = search.space, get_preset("msclip", search.space.size)
    fixed = space.normalize(space.from_policy(msclip))
    n = space.num_gates
    chosen = {"msclip": lambda step: [fixed], "msclip2": lambda step: [fixed, fixed],
              "extremes": lambda step: [[0] * n, [1] * space.num_layer_gates + [0] * (n - space.num_layer_gates)]}
    if paths in chosen:
        search._weight_paths = chosen[paths]
    batches, spe = search._batches(search.bundle.train, search.plan), search.plan.steps_per_epoch
    losses, start = [], time.perf_counter()
    for step in range(search.total_steps):
        search.weight_step(*next(batches), step)
        if (step + 1) % spe == 0:
            search.supernet.fix(msclip)
            losses.append(held_out_loss(search.supernet.eval(), heldout, torch.device("cpu")))
            search.supernet.train()
            print(f"{name}: epoch {(step + 1) // spe} held-out loss of the msclip path {losses[-1]:.3f}", flush=True)
    return {"variant": name, "overrides": sets, "paths": paths, "heldout_loss_by_epoch": losses, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = load_config(CONFIG, GumbelConfig, RECIPE)
    size = get_size(cfg.space.size)
    heldout = materialize(fresh_shapes(HELDOUT_PAIRS, HELDOUT_SEED, size.image_size, size.context_length), HELDOUT_BATCH)
    chance = contrastive_chance(HELDOUT_PAIRS, HELDOUT_BATCH)
    reference = standalone(heldout)
    rows = [run(name, sets, paths, heldout) for name, (sets, paths) in VARIANTS.items()]
    result = {
        "what": __doc__.split("\n\n")[0], "recipe": RECIPE, "seed": cfg.train.seed,
        "heldout": {"pairs": HELDOUT_PAIRS, "seed": HELDOUT_SEED, "batch_size": HELDOUT_BATCH, "chance_loss": chance},
        "standalone_msclip_by_epoch": reference, "rows": rows,
    }
    atomic.write_json(args.out, result)
    epochs = range(1, cfg.train.epochs + 1)
    lines = ["| paths the weights train on | " + " | ".join(f"epoch {e}" for e in epochs) + " |", "|---|" + "---:|" * len(epochs)]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in losses) + " |" for name, losses in
              [(f"standalone msclip (the trainer, seed {cfg.train.seed})", reference), *((r["variant"], r["heldout_loss_by_epoch"]) for r in rows)]]
    atomic.write_text(args.out.with_suffix(".md"), (
        "# Supernet learning speed\n\n" + __doc__.split("\n\n")[1].replace("\n", " ") + f"\n\nRecipe: `{' '.join(RECIPE)}` over "
        f"`{CONFIG.relative_to(ROOT)}`, seed {cfg.train.seed}. Held-out set: {HELDOUT_PAIRS:,} fresh shapes pairs (stream {HELDOUT_SEED}) "
        f"in batches of {HELDOUT_BATCH}; the loss of uninformative features is {chance:.2f}.\n\n"
        f"Regenerate: `python scripts/supernet_learning.py --out {args.out}`. Held-out loss (nats) of the `msclip` path:\n\n" + "\n".join(lines) + "\n"
    ))


if __name__ == "__main__":
    main()
