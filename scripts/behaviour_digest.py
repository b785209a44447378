"""Digests of what the training code computes, to show a refactor leaves behaviour bit-identical on the CPU.

Runs, at tiny sizes on generated data, in a temporary directory (about two minutes on one thread):
- a standalone training, once with one micro-batch per step and once with `train.accum_steps: 2`
  (metrics.jsonl without its timing fields, and the final weights);
- a Gumbel search with fine-tuned candidate scoring (arch.json's policy, candidates and inherited scores);
- a 3-trial Optuna study (each trial's params and value);
- a ShareBench entry with a cool-down branch (its record's scores at every length).

    python scripts/behaviour_digest.py            # one line per check: name, sha256 of its canonical JSON
    python scripts/behaviour_digest.py --values   # the values themselves, as JSON

Run it before and after a change and compare the lines; any difference in any bit shows.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

TIMING = ("samples_per_s", "seconds", "time", "elapsed", "started", "finished", "datetime", "duration", "hostname")
"""Fields whose values depend on the clock or the machine, left out of the digests."""

TRAIN: dict[str, Any] = {
    "model": {"policy": "msclip", "size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "max_eval_images": 40},
    "optim": {"lr": 1e-3, "warmup_epochs": None, "warmup_steps": 3, "grad_clip": 1.0},
    "train": {"steps": 12, "epochs": None, "batch_size": 16, "log_every": 1, "checkpoint_every": 6, "progress": False,
              "num_threads": 1},
    "eval": {"every_epochs": None, "every_steps": 6, "nmi_pairs": 0, "batch_size": 64},
}

GUMBEL: dict[str, Any] = {
    "space": {"size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "arch_fraction": 0.2, "max_eval_images": 40},
    "optim": {"lr": 2.0e-3, "warmup_epochs": None, "warmup_steps": 2, "grad_clip": 1.0},
    "train": {"steps": 10, "batch_size": 16, "num_threads": 1, "progress": False},
    "search": {"warmup_epochs": 0.25, "arch_lr": 0.1, "diagnostics_batch": 8},
    "derive": {"samples": 2, "batch_size": 16, "bn_recalibration_batches": 1, "finetune_steps": 2},
    "eval": {"nmi_pairs": 0, "every_epochs": None},
}

OPTUNA_TRAIN: dict[str, Any] = {
    "model": {"size": "tiny"},
    "data": {"source": "digits", "digit_repeats": 1, "max_eval_images": 60},
    "optim": {"warmup_epochs": None, "warmup_steps": 1},
    "train": {"epochs": None, "steps": 2, "batch_size": 16, "num_threads": 1, "progress": False, "checkpoint_every": None,
              "log_every": 1},
    "eval": {"every_epochs": None, "every_steps": None, "nmi_pairs": 0, "batch_size": 64},
}

BENCH_RECIPE: dict[str, Any] = {
    "model": {"policy": "msclip", "size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 160, "shapes_zeroshot_per_class": 2, "max_eval_images": 40},
    "optim": {"lr": 5e-4, "final_lr": 5e-5, "warmup_epochs": None, "warmup_steps": 2, "schedule": "wsd", "cooldown_fraction": 0.5},
    "train": {"epochs": 2, "batch_size": 16, "num_threads": 1, "progress": False, "device": "cpu"},
    "eval": {"every_epochs": None, "nmi_pairs": 0},
}


def without_timing(value: Any) -> Any:
    """`value` with every dict key that names a clock or machine field dropped, recursively."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def tensors_digest(path: Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def standalone(work: Path, accum_steps: int) -> dict[str, Any]:
    from trainer.checkpoint import latest_checkpoint, MODEL_FILE
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.metrics import read_metrics
    from trainer.typed_config import load_config

    raw = json.loads(json.dumps(TRAIN))
    raw["train"]["accum_steps"] = accum_steps
    run = work / f"train-accum{accum_steps}"
    train(load_config(raw, TrainConfig), run)
    return {"metrics": without_timing(read_metrics(run)), "weights": tensors_digest(latest_checkpoint(run) / MODEL_FILE)}


def gumbel(work: Path) -> dict[str, Any]:
    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search
    from trainer.metrics import read_metrics
    from trainer.typed_config import load_config

    out = work / "gumbel"
    run_gumbel_search(load_config(GUMBEL, GumbelConfig), out, retrain=False)
    arch = json.loads((out / "arch.json").read_text())
    return {"arch": without_timing({k: v for k, v in arch.items() if k != "provenance"}),
            "candidates": without_timing(arch["provenance"].get("candidates")), "metrics": without_timing(read_metrics(out))}


def optuna_study(work: Path) -> dict[str, Any]:
    import optuna

    from nas.discrete.config import load_search_config
    from nas.discrete.search import run_search

    path = work / "optuna.yaml"
    path.write_text(yaml.safe_dump({
        "study_name": "digest", "out_dir": str(work / "optuna"), "n_trials": 3, "baselines": ["msclip"],
        "objective": {"metric": "zeroshot/digits/top1"}, "sampler": {"seed": 0, "startup_trials": 2}, "pruner": {"kind": "none"},
        "space": {"layouts": ["share_last", "mask"], "parallel_branch": False}, **OPTUNA_TRAIN,
    }))
    result = run_search(load_search_config(path))
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    return {"trials": [{"params": t.params, "values": t.values, "state": t.state.name} for t in study.trials]}


def bench_entry(work: Path) -> dict[str, Any]:
    from nas.bench.build import prepare, run_entry
    from nas.bench.config import load_bench_config

    (work / "recipe.yaml").write_text(yaml.safe_dump(BENCH_RECIPE))
    config = work / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "name": "digest", "recipe": "recipe.yaml", "policies": ["msclip"], "random": {"count": 0}, "seeds": [0],
        "heldout": {"pairs": 64, "batch_size": 32}, "bootstrap": 200, "lengths": [1, 2],
        "metrics": {"val_loss": "val_loss", "zeroshot_shapes": "metrics.zeroshot/shapes/top1",
                    "r1": "mean(metrics.retrieval/shapes/i2t_r1, metrics.retrieval/shapes/t2i_r1)"},
        "ranking": "r1", "paper_zeroshot": "zeroshot_shapes",
    }))
    prepare(load_bench_config(config), work / "bench")
    record = run_entry(str(config), [], str(work / "bench"), "msclip", 0)
    return without_timing(json.loads(json.dumps(record, default=str).replace(str(work), "WORK")))


CHECKS = {
    "train": lambda work: standalone(work, 1),
    "train-accum2": lambda work: standalone(work, 2),
    "gumbel": gumbel,
    "optuna": optuna_study,
    "bench-entry": bench_entry,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", action="store_true", help="print the values as JSON instead of their digests")
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), help="run only these checks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in CHECKS.items():
            if args.only and name not in args.only:
                continue
            (Path(tmp) / name).mkdir()
            results[name] = check(Path(tmp) / name)
    if args.values:
        json.dump(results, sys.stdout, indent=1, sort_keys=True, default=str)
        print()
    else:
        for name, value in results.items():
            print(f"{name:14s} {hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
