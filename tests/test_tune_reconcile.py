"""`sharenas tune --resume` reconciles the searcher's restored state with the Optuna study: a trial the
study finished after the snapshot is not reported into; one asked for after it is failed and
queued again. The searcher alone (no Ray runtime): its snapshot is what `Tuner.restore` gives it."""
from __future__ import annotations

import logging

import optuna
import pytest
from optuna.trial import TrialState

pytest.importorskip("ray", reason="ray[tune] is not installed")

from ray.tune.search import Searcher  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from nas.tune.reconcile import OWNER_ATTR, ReconciledOptunaSearch, settled_trials  # noqa: E402


def space(trial) -> dict:
    """A define-by-run space (module level: the searcher's snapshot pickles it)."""
    return {"x": trial.suggest_float("x", 0.0, 1.0)}


def searcher(url: str, num_samples: int = 3) -> ReconciledOptunaSearch:
    return ReconciledOptunaSearch(space=space, metric="objective", mode="min", study_name="t", storage=optuna.storages.RDBStorage(url),
                                  sampler=optuna.samplers.RandomSampler(seed=0), experiment="t/1", num_samples=num_samples, max_retry=2)


def result(value: float, iteration: int) -> dict:
    return {"objective": value, "training_iteration": iteration}


def test_a_trial_finished_after_the_snapshot_is_not_reported_into_and_an_unowned_running_one_is_retried(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/study.db"
    first = searcher(url)
    a, b = first.suggest("a"), first.suggest("b")
    first.on_trial_result("a", result(3.0, 1))
    first.save(str(tmp_path / "snapshot.pkl"))  # Tune's snapshot: a and b running
    study = optuna.load_study(study_name="t", storage=url)
    number = dict(first.asked)
    study.tell(number["a"], 2.5)  # Optuna records `a` finished after the snapshot
    first.suggest("c")  # asked for after the snapshot: no restored Tune trial has it
    orphan = number["c"] = first.asked["c"]

    plain = OptunaSearch(space=space, metric="objective", mode="min")
    plain.restore(str(tmp_path / "snapshot.pkl"))
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # the failure --resume used to hit
        plain.on_trial_result("a", result(2.5, 2))

    resumed = searcher(url)
    resumed.restore(str(tmp_path / "snapshot.pkl"))
    caplog.clear()
    resumed.on_trial_result("a", result(2.5, 2))
    resumed.on_trial_complete("a", result(9.0, 3))
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warned  # not even a refused attempt to tell it
    resumed.on_trial_result("b", result(4.0, 1))
    trials = {t.number: t for t in study.get_trials()}
    assert trials[number["a"]].state == TrialState.COMPLETE and trials[number["a"]].value == 2.5
    assert trials[number["a"]].intermediate_values == {1: 3.0}  # nothing reported into it after it finished
    assert trials[number["b"]].state == TrialState.RUNNING and trials[number["b"]].intermediate_values == {1: 4.0}
    assert trials[orphan].state == TrialState.FAIL and "fail_reason" not in trials[orphan].user_attrs
    (retry,) = [t for t in trials.values() if t.state == TrialState.WAITING]
    assert retry.params == trials[orphan].params and retry.system_attrs["failed_trial"] == orphan

    assert resumed.suggest("d") == {"x": trials[orphan].params["x"]}  # the retry takes the orphan's place
    assert resumed.suggest("e") == Searcher.FINISHED  # a (finished), b, d: the budget of 3 is used up
    assert study.trials[retry.number].user_attrs[OWNER_ATTR] == "t/1"
    settled = settled_trials(study)
    assert sorted(settled) == sorted([number["a"], orphan])
    assert settled[number["a"]].result == {"objective": 2.5} and settled[orphan].state == "FAIL"
    assert a == {"x": trials[number["a"]].params["x"]} and b == {"x": trials[number["b"]].params["x"]}


def test_a_snapshot_without_the_searchers_record_is_refused(tmp_path):
    """A snapshot that does not say which Optuna trial each Ray trial runs (an older sharenas's, or a Ray
    that stopped keeping the searcher's attributes) would fail running trials as orphans: refused."""
    import pickle

    from trainer.typed_config import ConfigError

    url = f"sqlite:///{tmp_path}/study.db"
    first = searcher(url)
    first.suggest("a")
    path = tmp_path / "snapshot.pkl"
    first.save(str(path))
    state = pickle.loads(path.read_bytes())
    del state["asked"], state["done"]
    path.write_bytes(pickle.dumps(state))
    with pytest.raises(ConfigError, match="does not record which Optuna trial each Ray trial runs"):
        searcher(url).restore(str(path))
    assert optuna.load_study(study_name="t", storage=url).trials[0].state == TrialState.RUNNING  # nothing was failed
