"""What the Optuna search records per trial, shared by its own worker loop and Ray Tune's driver:
the trial's policy and parameter counts (`describe_trial`), its `arch.json`, what counts towards
the study's budget, the one-line failure reason, and the settings a study is tied to."""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces import ArchRecord, LayoutSpace, ParamCount, SharingPolicy, count_params, get_preset
from trainer.config import TrainConfig
from trainer.loop import TrainingDiverged
from trainer.typed_config import ConfigError, to_dict

from nas.discrete.config import OptunaSearchConfig
from nas.pareto.objectives import default_reference

ARTIFACT_DIR = "artifacts"
BASELINE_PARAM = "baseline"
"""The one parameter of a baseline trial that is no point of the space (enqueued with user attribute
`baseline` too); a baseline the space can express is enqueued with its parameters in the space."""

RUNTIME_KEYS = ("train.device", "train.num_threads", "train.num_workers", "train.progress", "train.log_every",
                "train.checkpoint_every", "train.checkpoint_steps", "train.checkpoint_on_eval", "train.keep_checkpoints", "eval.batch_size")
"""Trial-config keys a resumed study may change (they do not change results)."""


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Everything but FAIL trials without a reason (a killed worker's trial is replaced by its retry)."""
    return trial.state != TrialState.FAIL or "fail_reason" in trial.user_attrs


def policy_key(policy: SharingPolicy) -> str:
    """A hash of the policy without its name: equal keys train the same model."""
    data = policy.to_dict()
    data.pop("name")
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def exception_reason(exc: BaseException) -> str:
    """One line for the `fail_reason` attribute."""
    import torch

    if isinstance(exc, TrainingDiverged):
        text = f"diverged: {exc}"
    elif isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        text = f"out of memory: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 1000 else text[:997] + "..."


def fingerprint(cfg: OptunaSearchConfig) -> dict[str, Any]:
    """The settings a study is tied to: re-running it with others would mix incomparable trials."""
    train_cfg = to_dict(cfg.train_template)
    for key in RUNTIME_KEYS:
        section, name = key.split(".")
        train_cfg[section].pop(name)
    return json.loads(json.dumps({
        "objective": asdict(cfg.objective), "baselines": cfg.baselines, "space": asdict(cfg.space), "train": train_cfg,
    }))


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in dict.fromkeys([*a, *b]) for k in diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix[:-1]]


def arch_record(
    policy: SharingPolicy, train_cfg: TrainConfig, counts: ParamCount, metrics: dict[str, float], provenance: dict[str, Any]
) -> ArchRecord:
    """`arch.json` of a trial: what to rebuild and how it did."""
    train_dict = to_dict(train_cfg)
    train_dict["model"]["policy"] = policy.name
    return ArchRecord(train_cfg.model.size, policy, counts, metrics, provenance, model=train_dict["model"], train_config=train_dict)


def baseline_params(space: LayoutSpace, name: str) -> dict[str, Any]:
    """The parameters a baseline trial is enqueued with: its point in the space, else `{baseline: name}`."""
    return space.params_of(get_preset(name, space.size)) or {BASELINE_PARAM: name}


def reference_point(cfg: OptunaSearchConfig) -> dict[str, float]:
    """The configured reference point over the defaults (params and flops: see `default_reference`)."""
    o = cfg.objective
    return {**default_reference(cfg.train_template.model.size, o.costs), **o.reference_point}


def describe_trial(cfg: OptunaSearchConfig, space: LayoutSpace, trial: optuna.Trial) -> tuple[SharingPolicy, ParamCount]:
    """The trial's policy (a baseline trial's preset, its one parameter `baseline`; else a point of the
    space) and its parameter counts, recorded as user attributes (and the budget as a constraint).
    Ray Tune's define-by-run space calls this too, so both drivers record trials alike."""
    size = cfg.train_template.model.size
    if "baseline" in trial.user_attrs:
        policy = get_preset(trial.user_attrs["baseline"], size)
        if BASELINE_PARAM in baseline_params(space, policy.name):
            trial.suggest_categorical(BASELINE_PARAM, cfg.baselines)
        elif policy_key(space.suggest(trial)) != policy_key(policy):
            raise ConfigError(f"baseline {policy.name}: its parameters in the space build another policy; start a new study")
    else:
        policy = space.suggest(trial)
    counts = count_params(policy, size)
    attrs = {
        "policy": policy.to_dict(), "policy_name": policy.name, "policy_key": policy_key(policy),
        "params": counts.to_dict(), "params_total": counts.total,
    }
    if cfg.budget is not None:
        attrs["within_budget"] = counts.total <= cfg.budget
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a retried trial inherits its constraint: "already set"
            trial.set_constraint("params", counts.total - cfg.budget)
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    return policy, counts
