"""Train and evaluate from a YAML config or a run directory: what `sharenas train` / `sharenas eval`
call, and a torchrun-friendly entry point that needs nothing but `trainer/`:

    torchrun --nproc_per_node 8 -m trainer.run experiments/b32/msclip.yaml --out runs/b32-msclip
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from search_spaces import PolicyError
from trainer.checkpoint import CheckpointError, read_state, resolve_checkpoint
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.data.errors import DataError
from trainer.loop import CONFIG_FILE, TrainingDiverged, TrainResult, train

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, PolicyError, DataError)
"""Errors caused by user input: reported as one line with exit code 2."""

EVAL_FILE = "eval.json"


def default_run_dir(config: str | Path) -> Path:
    """`runs/<config file stem>` in the working directory."""
    return Path("runs") / Path(config).stem


def run_training(config: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Load `config` with `--set` style overrides and train into `out` (default `runs/<stem>`)."""
    cfg = load_config(config, TrainConfig, overrides)
    return train(cfg, Path(out) if out is not None else default_run_dir(config), resume=resume)


def run_evaluation(run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Evaluate the latest checkpoint of a run with its own config (plus overrides).

    Writes `RUN_DIR/eval.json` (`step`, `checkpoint`, `metrics`) and returns the metrics.
    """
    import torch

    from search_spaces import build_model
    from trainer.checkpoint import load_model_weights
    from trainer.data import build_data
    from trainer.distributed import pick_device
    from trainer.evaluation import evaluate

    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    if not config.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); pass the --out of a `sharenas train` run")
    cfg = load_config(config, TrainConfig, overrides)
    checkpoint = resolve_checkpoint(run_dir)
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    device = pick_device(cfg.train.device)
    model = build_model(cfg.model.policy, cfg.model.size)
    load_model_weights(model, checkpoint)
    model.to(device)
    bundle = build_data(cfg.data, model.size.image_size, model.size.context_length)
    e = cfg.eval
    metrics = evaluate(
        model, bundle, device, batch_size=e.batch_size, nmi_pairs=e.nmi_pairs, probe_C=e.probe_C,
        seed=cfg.train.seed, progress=cfg.train.progress, heldout_batch_size=e.heldout_batch_size,
    )
    record = {"step": read_state(checkpoint)["step"], "checkpoint": checkpoint.name, "metrics": metrics}
    (run_dir / EVAL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.run", description="Train a SharedCLIP model from a YAML config.")
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--out", default=None, help="run directory (default runs/<config stem>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    args = parser.parse_args(argv)
    try:
        run_training(args.config, args.overrides, args.out, args.resume)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
