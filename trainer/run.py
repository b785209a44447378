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
from typing import Any

from search_spaces import PolicyError
from trainer import atomic
from trainer.checkpoint import CheckpointError, read_state, resolve_checkpoint
from trainer.config import TrainConfig
from trainer.data.errors import DataError
from trainer.loop import TrainingDiverged, TrainResult, train
from trainer.rundir import RunDir
from trainer.typed_config import CONFIG_FILE, ConfigError, config_diff, load_config, to_dict

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, PolicyError, DataError)
"""Errors caused by user input: reported as one line with exit code 2."""

EVAL_FILE = "eval.json"


CHANGES_FILE = "resume_changes.jsonl"


def default_run_dir(config: str | Path) -> Path:
    """`runs/<config folder>-<config stem>` in the working directory, so experiments/tiny/msclip.yaml
    and experiments/b32/msclip.yaml do not collide."""
    config = Path(config)
    folder = config.resolve().parent.name
    return Path("runs") / (f"{folder}-{config.stem}" if folder else config.stem)


def resolve_resume(
    run_dir: Path, config: str | Path | None, overrides: Sequence[str], allow_changes: bool, schema: type = TrainConfig
) -> Any:
    """The config (of dataclass `schema`) a resumed run continues with: its own `config.yaml`, or
    `config` + overrides when they change nothing or `allow_changes` is given (the changes are then
    printed and appended to `RUN/resume_changes.jsonl`)."""
    saved_file = run_dir / CONFIG_FILE
    saved = RunDir(run_dir).saved(schema)
    wanted = load_config(config if config is not None else saved_file, schema, overrides)
    changed = config_diff(saved, wanted)
    if changed and not allow_changes:
        raise ConfigError(
            f"--resume: the config differs from the run's own {saved_file} in {', '.join(changed)}; resume with "
            f"`--resume --out {run_dir}` alone, or pass --allow-changes to apply them"
        )
    if changed:
        old, new = to_dict(saved), to_dict(wanted)

        def get(tree: dict, key: str):
            for part in key.split("."):
                tree = tree.get(part) if isinstance(tree, dict) else None
            return tree

        record = {key: {"from": get(old, key), "to": get(new, key)} for key in changed}
        described = ", ".join(f"{key} {change['from']!r} -> {change['to']!r}" for key, change in record.items())
        print(f"resume: applying changed {described}", file=sys.stderr)
        with open(run_dir / CHANGES_FILE, "a") as handle:
            handle.write(json.dumps({"changes": record}) + "\n")
    return wanted


def run_training(
    config: str | Path | None, overrides: Sequence[str] = (), out: str | Path | None = None, resume: bool = False, allow_changes: bool = False
) -> TrainResult:
    """Load `config` with `--set` style overrides and train into `out` (default `runs/<folder>-<stem>`).

    `resume` continues the run in `out` with its own config (`config` may be None); a config that
    differs is refused unless `allow_changes`. An `eval.json` older than the run's last step is
    rewritten with the final evaluation."""
    if config is None and not resume:
        raise ConfigError("give a CONFIG.yaml (or --resume --out RUN to continue a run)")
    if out is None:
        if config is None:
            raise ConfigError("--resume without a config needs --out RUN")
        out = default_run_dir(config)
    run_dir = Path(out)
    cfg = resolve_resume(run_dir, config, overrides, allow_changes) if resume else load_config(config, TrainConfig, overrides)
    result = train(cfg, run_dir, resume=resume)
    stale = run_dir / EVAL_FILE
    if stale.is_file() and result.metrics and json.loads(stale.read_text()).get("step") != result.step:
        atomic.write_json(stale, {"step": result.step, "checkpoint": f"step_{result.step:08d}", "metrics": result.metrics})
    return result


def run_evaluation(run_dir: str | Path, overrides: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """Evaluate the latest checkpoint of a run with its own config (plus overrides).

    Writes `RUN_DIR/eval.json` (`step`, `checkpoint`, `metrics`, `chance`) and returns the metrics
    and their chance levels.
    """
    import torch

    from search_spaces import build_model
    from trainer.checkpoint import load_model_weights
    from trainer.data import build_data
    from trainer.distributed import pick_device
    from trainer.evaluation import evaluate
    from trainer.evaluation.chance import chance_levels

    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    if (run_dir / "supernet.safetensors").is_file() or (run_dir / "gates.json").is_file():
        raise ConfigError(
            f"{run_dir} is a Gumbel search run, not a training run: evaluate its retrained model with "
            f"`sharenas eval {run_dir / 'retrain'}` (search with --retrain) or export it with `sharenas export {run_dir}`"
        )
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
    chance = chance_levels(bundle, e.heldout_batch_size)
    record = {"step": read_state(checkpoint)["step"], "checkpoint": checkpoint.name, "metrics": metrics, "chance": chance}
    atomic.write_json(run_dir / EVAL_FILE, record)
    return metrics, chance


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.run", description="Train a SharedCLIP model from a YAML config.")
    parser.add_argument("config", nargs="?", help="training config (YAML); optional with --resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--out", default=None, help="run directory (default runs/<config folder>-<config stem>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--allow-changes", action="store_true", help="with --resume: apply a config that differs from the run's own")
    args = parser.parse_args(argv)
    try:
        run_training(args.config, args.overrides, args.out, args.resume, args.allow_changes)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
