"""`sharenas export`: turn what a run or search produced into an export directory
(`search_spaces/model/exported.py`): arch.json + model.safetensors + a model card, optionally ONNX encoders.

Sources:
- a training run (`sharenas train`, a bench entry, an Optuna trial's run): its latest checkpoint;
- a Gumbel search run: the derived policy with the retrained weights when `--retrain` ran, else the
  supernet's inherited weights for that path (said in the card);
- an Optuna study (`--storage URL --study NAME`): the best completed trial, or `--trial N`;
- a Ray Tune experiment directory (`sharenas tune`): its best trial that ran to the end, or `--trial N`
  (the Optuna trial number).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces import ARCH_FILE, ArchRecord, SharedCLIP, build_model, save_exported
from trainer import atomic
from trainer.checkpoint import latest_checkpoint, load_model_weights, read_state
from trainer.config import TrainConfig
from trainer.metrics import read_metrics
from trainer.typed_config import CONFIG_FILE, ConfigError, load_config, to_dict

from nas.provenance import package_versions

EXPORT_PACKAGES = ("torch", "safetensors", "open-clip-torch", "optuna", "sharenas")
"""The packages whose versions an exported arch.json records."""


@dataclass
class Exportable:
    model: SharedCLIP
    provenance: dict[str, Any]
    metrics: dict[str, float]
    weights_origin: str


def _last_eval(run_dir: Path, step: int) -> dict[str, float]:
    """The evaluation metrics of `step` (eval.json if it is that step's, else metrics.jsonl)."""
    eval_file = run_dir / "eval.json"
    if eval_file.is_file():
        record = json.loads(eval_file.read_text())
        if record.get("step") == step:
            return record["metrics"]
    for record in reversed(read_metrics(run_dir)):
        if record.get("step") == step and not any(k.startswith("train/") for k in record):
            return {k: v for k, v in record.items() if k not in ("step", "epoch")}
    return {}


def from_training_run(run_dir: Path) -> Exportable:
    cfg = load_config(run_dir / "config.yaml", TrainConfig)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(f"{run_dir} holds no checkpoint yet; train it first (or resume it with --resume)")
    model = build_model(cfg.model.policy, cfg.model.size)
    load_model_weights(model, checkpoint)
    step = read_state(checkpoint)["step"]
    provenance = {"source": "training run", "run_dir": str(run_dir.resolve()), "checkpoint": checkpoint.name, "step": step,
                  "train_config": to_dict(cfg)}
    return Exportable(model, provenance, _last_eval(run_dir, step), f"trained standalone for {step} steps ({run_dir})")


def from_gumbel_run(run_dir: Path) -> Exportable:
    from safetensors.torch import load_file

    from nas.supernet.config import GumbelConfig
    from nas.supernet.rundir import build_supernet, weights_file

    arch_file = run_dir / ARCH_FILE
    if not arch_file.is_file():
        raise ConfigError(f"{run_dir} holds no arch.json: the search did not finish; rerun it")
    arch = ArchRecord.load(arch_file)
    if (run_dir / "retrain" / "checkpoints").is_dir():
        exported = from_training_run(run_dir / "retrain")
        exported.provenance.update(search="gumbel", search_run=str(run_dir.resolve()), selected=arch.provenance.get("selected"))
        exported.metrics = {**arch.metrics, **exported.metrics}
        return exported
    cfg = load_config(run_dir / CONFIG_FILE, GumbelConfig)
    supernet = build_supernet(cfg)
    space = supernet.space
    policy = arch.policy
    supernet.load_state_dict(load_file(str(weights_file(run_dir, policy, space))))
    model = build_model(policy, space.size)
    model.load_state_dict(supernet.standalone_state_dict(policy), strict=True)
    provenance = {"source": "gumbel search", "search": "gumbel", "search_run": str(run_dir.resolve()),
                  "selected": arch.provenance.get("selected"), "search_seconds": arch.provenance.get("search_seconds")}
    origin = "inherited from the supernet (not retrained: run `sharenas search gumbel --retrain` for trained weights)"
    return Exportable(model, provenance, arch.metrics, origin)


def from_study(storage: str, study_name: str, trial_number: int | None) -> Exportable:
    import optuna

    from nas.discrete.storage import open_storage

    handle = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=handle.storage)
    except KeyError:
        raise ConfigError(f"study {study_name!r} not found in {handle.display_url}; list studies with `optuna studies --storage URL`") from None
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("run_dir")]
    if trial_number is not None:
        chosen = next((t for t in done if t.number == trial_number), None)
        if chosen is None:
            raise ConfigError(f"trial {trial_number} of {study_name!r} is not a completed trial with a run; completed: {[t.number for t in done]}")
    else:
        if not done:
            raise ConfigError(f"study {study_name!r} has no completed trial to export yet")
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        chosen = (max if maximize else min)(done, key=lambda t: t.values[0])
    exported = from_training_run(Path(chosen.user_attrs["run_dir"]))
    exported.provenance.update(search="optuna", storage=handle.display_url, study=study_name, trial=chosen.number,
                               value=chosen.values[0], selected="best" if trial_number is None else "--trial")
    if len(study.directions) > 1:  # any member of the front can be exported with --trial
        from nas.pareto.study import objective_names

        front = {t.number for t in study.best_trials}
        exported.provenance.update(objectives=dict(zip(objective_names(study), chosen.values)), on_pareto_front=chosen.number in front)
    return exported


def from_ray_experiment(path: Path, trial_number: int | None) -> Exportable:
    """The best trial of a `sharenas tune` experiment among those that ran every evaluation."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(path.resolve()))
    trials = [t for t in analysis.trials if t.last_result and "run_dir" in t.last_result]
    if trial_number is not None:
        trials = [t for t in trials if t.config.get("optuna_trial") == trial_number]
        if not trials:
            raise ConfigError(f"{path} has no finished trial with Optuna trial number {trial_number}")
    full = max((t.last_result.get("training_iteration", 0) for t in trials), default=0)
    finished = [t for t in trials if t.last_result.get("training_iteration", 0) == full]
    if not finished:
        raise ConfigError(f"{path} holds no trial that reported a run; is it a `sharenas tune` experiment?")
    mode = analysis.default_mode or "min"
    chosen = (min if mode == "min" else max)(finished, key=lambda t: t.last_result["objective"])
    exported = from_training_run(Path(chosen.last_result["run_dir"]))
    exported.provenance.update(search="ray tune", experiment=str(path.resolve()), ray_trial=chosen.trial_id,
                               optuna_trial=chosen.config.get("optuna_trial"), value=chosen.last_result["objective"])
    return exported


def resolve_source(source: Path | None, storage: str | None, study: str | None, trial: int | None) -> Exportable:
    if storage is not None or study is not None:
        if storage is None or study is None:
            raise ConfigError("an Optuna source needs both --storage URL and --study NAME")
        return from_study(storage, study, trial)
    if source is None:
        raise ConfigError("give SOURCE (a run or search directory) or --storage URL --study NAME")
    if not source.is_dir():
        raise ConfigError(f"{source} is not a directory: give a training run, a Gumbel search run or --storage/--study")
    if (source / "supernet.safetensors").is_file():
        return from_gumbel_run(source)
    if any(source.glob("experiment_state-*.json")):
        return from_ray_experiment(source, trial)
    if (source / "config.yaml").is_file() and (source / "checkpoints").is_dir():
        return from_training_run(source)
    raise ConfigError(f"{source} is neither a training run (config.yaml + checkpoints/), a Gumbel search run (supernet.safetensors) "
                      "nor a Ray Tune experiment (experiment_state-*.json)")


def export(source: Path | None, out: Path, storage: str | None = None, study: str | None = None, trial: int | None = None,
           onnx: bool = False) -> ArchRecord:
    """Write the export directory; returns its arch.json record."""
    exported = resolve_source(source, storage, study, trial)
    record = save_exported(exported.model, out, exported.provenance, exported.metrics, package_versions(EXPORT_PACKAGES), exported.weights_origin)
    if onnx:
        from nas.export.onnx import export_onnx

        record.onnx = export_onnx(exported.model, out)
        atomic.write_with(out / ARCH_FILE, record.save)
    return record

