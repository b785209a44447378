"""Resuming a `sharenas tune` Optuna experiment: Tune's restored trials reconciled with the study.

`Tuner.restore` starts from Tune's last experiment snapshot, taken every few seconds, while Optuna
records a trial the moment Tune finishes it. A driver killed in between leaves the two apart:
- a trial finished in the study that the snapshot still has running: Tune runs it again and reports
  into the finished Optuna trial, which Optuna refuses (`UpdateFinishedTrialError`);
- a trial RUNNING in the study that the snapshot does not have (asked for after it): no Tune trial
  ever finishes it.

The study is the record of what a trial did. On --resume:
- a trial finished in the study is not trained again: its trainable replays the last result the
  study recorded (`Settled.replay`; a FAIL one raises again), so Tune's record ends with that value,
  and the searcher (`ReconciledOptunaSearch`) and the progress callback write nothing into it;
- a RUNNING trial of this experiment that no restored Tune trial continues is failed and queued
  again with its parameters, as the Optuna driver does with a trial whose worker stopped beating
  (`RetryHeartbeatStaleTrialCallback`); as there, the failed one does not count;
- a RUNNING trial that a restored Tune trial continues resumes from that trial's last checkpoint,
  in the same Optuna trial;
- the experiment stops asking for trials once the study holds `num_samples` of its own that count
  (`nas.discrete.records.counts_toward_budget`), so a finished trial the snapshot missed is not
  replaced by another.

A trial is the experiment's by its `ray_experiment` user attribute, set right after it is asked for,
as the space starts describing it (a driver killed between those two writes leaves a RUNNING trial
nobody owns, as an Optuna worker killed without heartbeats does).
"""
from __future__ import annotations

import sys
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from trainer.typed_config import ConfigError

from nas.discrete.records import counts_toward_budget

OWNER_ATTR = "ray_experiment"


def experiment_id(name: str) -> str:
    """A new experiment's id: its name, unique even when the name is used again on the same study."""
    return f"{name}/{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Settled:
    """A trial the study has finished: what its Tune trial reports instead of training again."""

    number: int
    state: str
    result: dict[str, Any] | None
    """The last result the study recorded for it (COMPLETE), else None."""

    def replay(self) -> None:
        from ray import tune

        if self.state == TrialState.FAIL.name:
            raise RuntimeError(f"Optuna trial {self.number} is FAIL in the study (it failed before the driver stopped); it is not run again")
        if self.result is not None:
            tune.report(self.result)


def settled_trials(study: optuna.Study) -> dict[int, Settled]:
    """The finished trials that Ray Tune asked for, by number."""
    settled = {}
    for t in study.get_trials(deepcopy=False):
        if OWNER_ATTR not in t.user_attrs or not t.state.is_finished():
            continue
        result = None
        if t.state == TrialState.COMPLETE:
            # the metrics hold a multi-objective trial's costs (`cost/NAME`) too
            result = {**t.user_attrs.get("metrics", {}), "objective": t.values[0]}
            if "run_dir" in t.user_attrs:
                result["run_dir"] = t.user_attrs["run_dir"]
        settled[t.number] = Settled(t.number, t.state.name, result)
    return settled


class OwnedSpace:
    """A define-by-run space that marks each trial it describes as the experiment's (`OWNER_ATTR`)
    and keeps that trial's number, so the searcher knows which Optuna trial each Ray trial runs
    through Optuna's public `Trial` API (Ray calls the space right after asking for the trial)."""

    def __init__(self, space: Callable[[Any], dict[str, Any] | None], experiment: str) -> None:
        self.space, self.experiment = space, experiment
        self.number: int | None = None

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        trial.set_user_attr(OWNER_ATTR, self.experiment)
        self.number = trial.number
        return self.space(trial)


class ReconciledOptunaSearch(OptunaSearch):
    """Ray's `OptunaSearch` (define-by-run spaces) that keeps to what the study says: see the module
    docstring. `experiment` is the id of the experiment (`experiment_id`), `num_samples` its
    budget in trials, `max_retry` how often a trial that lost its driver is queued again.

    It keeps its own record of the Optuna trial number of each Ray trial (`asked`) and of the Ray
    trials that finished (`done`), and reads the study through `study` and `storage`, Optuna's public
    API: Ray's searcher state is not read. `OptunaSearch.save` pickles the searcher's attributes, so
    the record is in Tune's snapshot; a snapshot without it is refused on restore."""

    def __init__(self, *, space: Callable[[Any], dict[str, Any] | None], storage: BaseStorage, study_name: str, experiment: str,
                 num_samples: int, max_retry: int | None, sampler: optuna.samplers.BaseSampler | None = None, **kwargs: Any) -> None:
        self.experiment, self.num_samples, self.max_retry = experiment, num_samples, max_retry
        self.owned = OwnedSpace(space, experiment)
        super().__init__(space=self.owned, storage=storage, study_name=study_name, sampler=sampler, **kwargs)
        self.storage = storage
        self.study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        self.study_id = storage.get_study_id_from_name(study_name)
        self.asked: dict[str, int] = {}
        self.done: set[str] = set()

    def _mine(self, trial: FrozenTrial) -> bool:
        return trial.user_attrs.get(OWNER_ATTR) == self.experiment

    def _counted(self) -> int:
        return sum(self._mine(t) and t.state != TrialState.WAITING and counts_toward_budget(t) for t in self.study.get_trials(deepcopy=False))

    def suggest(self, trial_id: str) -> dict | str | None:
        if trial_id not in self.asked and self._counted() >= self.num_samples:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        self.asked[trial_id] = self.owned.number
        return config

    def _finished_in_study(self, trial_id: str) -> bool:
        number = self.asked.get(trial_id)
        if number is None:
            return False
        return self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)).state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._finished_in_study(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._finished_in_study(trial_id):
            super().on_trial_complete(trial_id, result=result, error=error)
        self.done.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        fresh = getattr(self, "asked", None)
        super().restore(checkpoint_path)
        if getattr(self, "asked", None) is fresh:
            raise ConfigError(
                f"--resume: the searcher snapshot {checkpoint_path} does not record which Optuna trial each Ray trial runs (written by "
                "an older sharenas, or Ray no longer keeps the searcher's attributes in it); finish the experiment with the sharenas "
                "and Ray that started it, or start a new one")
        continued = {number for trial_id, number in self.asked.items() if trial_id not in self.done}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if self._mine(t) and t.number not in continued:
                self.study.tell(t.number, state=TrialState.FAIL)
                retry(self.study, t)
                print(f"tune --resume: Optuna trial {t.number} was running but no restored Ray trial continues it (the driver "
                      "stopped right after asking for it): failed and queued again", file=sys.stderr)
