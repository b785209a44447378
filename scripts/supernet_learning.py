"""How fast does the supernet learn under each way of sampling its weight paths?

Trains the supernet of `experiments/tiny/gumbel.yaml` for 2 epochs at the standalone recipe (LR
5e-4) with weight steps only, and after each epoch measures the held-out loss of one fixed path,
`msclip`'s, on 1,024 fresh shapes pairs (chance ln 128 = 4.85). A standalone `msclip` gets 3.84 and
2.72 after its 1st and 2nd epoch (ShareBench-tiny). Variants: the `msclip` path only (the supernet
machinery against standalone training), two half-batch `msclip` paths (the cost of halving the
batch), only the two extreme paths, fair random paths (the search's `fairness: strict`, with and
without the sandwich's extreme paths) with and without the early-specialization / fusion gates, each
with and without weight entanglement.

    python scripts/supernet_learning.py --out experiments/results/supernet-learning.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from search_spaces import get_preset
from trainer.config import load_config
from trainer.data import fresh_shapes
from trainer.distributed import World
from trainer.evaluation.heldout import held_out_loss, materialize

from nas.supernet.config import GumbelConfig
from nas.supernet.search import GumbelSearch

ROOT = Path(__file__).resolve().parents[1]
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


def run(name: str, sets: list[str], paths: str, heldout) -> dict:
    cfg = load_config(ROOT / "experiments" / "tiny" / "gumbel.yaml", GumbelConfig, RECIPE + sets)
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
    heldout = materialize(fresh_shapes(1024, 123, 32, 32), 128)
    rows = [run(name, sets, paths, heldout) for name, (sets, paths) in VARIANTS.items()]
    result = {"what": __doc__.split("\n\n")[0], "standalone_msclip_by_epoch": [3.84, 2.72], "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| paths the weights train on | epoch 1 | epoch 2 |", "|---|---:|---:|",
             "| standalone msclip (ShareBench-tiny, seed 0) | 3.84 | 2.72 |"]
    lines += [f"| {r['variant']} | {r['heldout_loss_by_epoch'][0]:.2f} | {r['heldout_loss_by_epoch'][1]:.2f} |" for r in rows]
    args.out.with_suffix(".md").write_text(
        "# Supernet learning speed\n\n" + __doc__.split("\n\n")[1].replace("\n", " ") + "\n\nRegenerate: `python scripts/supernet_learning.py "
        f"--out {args.out}`. Held-out loss (nats) of the `msclip` path:\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
