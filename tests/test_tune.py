"""`sharenas tune` on the real Ray engine: ASHA, the shared Optuna study, retries from checkpoints,
--resume after the driver is killed, and `ray job submit` to a token-authenticated head."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from search_spaces import SharingPolicy
from test_optuna_search import TRAIN, search_config
from ray_clusters import cluster, ray_head  # noqa: F401 (fixtures)
from tune_driver import (ROOT, checkpointed, completed, held, ray_values, reported_steps, run_to_end, snapshot, start, stop_group, study,
                         wait_until)

ray = pytest.importorskip("ray", reason="ray[default,tune] is not installed")

EVALUATIONS = 3  # 6 steps, evaluated every 2
HOLD, FAIL_ONCE = "SHARENAS_TUNE_HOLD", "SHARENAS_TUNE_FAIL_ONCE"


def experiment(tmp_path: Path, n: int = 6, scheduler: str = "asha", max_concurrent: int = 2, objective: dict | None = None) -> Path:
    """A short study on a continuous objective (the held-out loss: no ties for ASHA to keep)."""
    train = {
        **TRAIN, "data": {"source": "shapes", "num_shapes": 120, "shapes_zeroshot_per_class": 2, "max_eval_images": 40, "heldout_shapes": 64},
        "train": {**TRAIN["train"], "steps": 6}, "eval": {**TRAIN["eval"], "every_steps": 2, "heldout_batch_size": 32},
    }
    search = search_config(tmp_path, baselines=["msclip", "clip"], n_trials=n, **train,
                           objective={"metric": "heldout/shapes/loss", "direction": "minimize", **(objective or {})})
    search["storage"] = f"sqlite:///{tmp_path}/study.db"
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({
        "search": "search.yaml", "experiment": "t", "storage_path": str(tmp_path / "ray"), "num_samples": n, "max_concurrent": max_concurrent,
        # A trial reaching the first rung goes on only if it is the best there so far (reduction factor 4):
        # with 6 trials, the chance that ASHA stops none is 1/720.
        "scheduler": {"kind": scheduler, "grace_period": 1, "reduction_factor": 4}, "max_failures": 2,
    }))
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The objective of a policy trained in one go, in this process, with the experiment's recipe."""
    from nas.discrete.config import load_search_config
    from nas.objective import TrialObjective

    values: dict[str, float] = {}

    def value(search_yaml: Path, trial: optuna.trial.FrozenTrial) -> float:
        key = trial.user_attrs["policy_key"]
        if key not in values:
            cfg = load_search_config(search_yaml)
            template = cfg.train_template
            template.train.checkpoint_on_eval = True  # as the trainable trains
            policy = SharingPolicy.from_dict(trial.user_attrs["policy"])
            values[key] = TrialObjective(template, cfg.objective.metric).run(policy, tmp_path_factory.mktemp("uninterrupted"))[1]
        return values[key]

    return value


# moment the driver is killed at -> (environment of both runs, the event that is that moment)
MOMENTS = {
    # trial 0 has reported step 2, and Tune's snapshot holds that step's checkpoint
    "mid-trial": ({HOLD: "0:2", FAIL_ONCE: "1:4", "TUNE_GLOBAL_CHECKPOINT_S": "1"},
                  lambda tmp: held(tmp, 0, 2) and checkpointed(tmp, 0, 2)),
    # trial 0 is COMPLETE in the study and trial 1 was asked for, while Tune's last snapshot (forced every
    # 2 trial checkpoints, num_to_keep) still has trial 0 running: the race --resume must reconcile
    "between-trials": ({HOLD: "1:0", FAIL_ONCE: "2:4", "TUNE_GLOBAL_CHECKPOINT_S": "3600"},
                       lambda tmp: held(tmp, 1, 0)),
    # trial 1 failed at step 4, was retried from its step-2 checkpoint, has reported step 4 again, and
    # Tune's snapshot holds that checkpoint
    "during-a-retry": ({HOLD: "1:4", FAIL_ONCE: "1:4", "TUNE_GLOBAL_CHECKPOINT_S": "1"},
                       lambda tmp: held(tmp, 1, 4) and checkpointed(tmp, 1, 4)),
}


@pytest.mark.integration
@pytest.mark.parametrize("moment", MOMENTS)
def test_tune_retries_a_failed_trial_from_its_checkpoint_and_resumes_after_the_driver_is_killed(tmp_path, moment, uninterrupted):
    """Killed at a moment its trials define, the driver resumes to the full number of trials, each counted
    once, with every value what training that policy in one go gives; the trial with an injected failure
    is retried from its checkpoint."""
    env, reached = MOMENTS[moment]
    config = experiment(tmp_path, n=3, scheduler="fifo", max_concurrent=1)  # one trial at a time: the moments are well defined
    driver = start(config, env=env)
    try:
        wait_until(lambda: reached(tmp_path), f"the moment {moment}", driver)
    finally:
        stop_group(driver)
    if moment == "between-trials":
        assert [t.number for t in completed(tmp_path)] == [0]
        assert snapshot(tmp_path)[0][0] != "TERMINATED"  # Tune's snapshot lags behind the study
    finished = {t.number: (t.value, t.intermediate_values, (tmp_path / "runs" / f"trial_{t.number:04d}" / "metrics.jsonl").stat().st_mtime_ns)
                for t in completed(tmp_path)}
    output = run_to_end(config, "--resume", env=env)

    trials = study(tmp_path).get_trials()
    counted = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state != TrialState.COMPLETE]
    assert len(counted) == 3, output[-3000:]
    assert sorted(t.user_attrs["baseline"] for t in counted if "baseline" in t.user_attrs) == ["clip", "msclip"]
    for lost in failed:  # asked for by the killed driver after Tune's last snapshot: failed and queued again, not counted
        assert lost.state == TrialState.FAIL and "fail_reason" not in lost.user_attrs
        (retry,) = [t for t in counted if t.system_attrs.get("failed_trial") == lost.number]
        assert retry.params == lost.params
    assert len(failed) == (1 if moment == "between-trials" else 0)
    for number, (value, intermediate, mtime) in finished.items():  # finished trials were neither run again nor reported into
        assert trials[number].value == value and trials[number].intermediate_values == intermediate
        assert (tmp_path / "runs" / f"trial_{number:04d}" / "metrics.jsonl").stat().st_mtime_ns == mtime
    for t in counted:
        assert t.user_attrs["policy"]["schema"] == "sharenas/policy/v1" and t.user_attrs["evaluations"] == f"{EVALUATIONS}/{EVALUATIONS}"
        assert t.value == uninterrupted(tmp_path / "search.yaml", t), t.number
    assert ray_values(tmp_path) == {t.number: t.value for t in counted}  # Tune's record: each trial once, with the study's value
    retried = int(env[FAIL_ONCE].split(":")[0])
    assert (tmp_path / "runs" / f".failed-once-{retried}-4").is_file()
    assert reported_steps(tmp_path, retried) == [2, 4, 6]  # retried from the step-2 checkpoint: step 2 was not trained and reported again
    assert not trials[retried].user_attrs["stopped_early"]
    if moment != "between-trials":  # the held trial went on from the checkpoint Tune's snapshot holds
        assert reported_steps(tmp_path, int(env[HOLD].split(":")[0])) == [2, 4, 6]


@pytest.mark.integration
def test_resume_does_not_run_a_trial_the_study_finished_after_the_snapshot_and_retries_one_no_ray_trial_has(tmp_path):
    """Deterministic: trial 0 stops after step 2 and Tune's snapshot holds it running; the driver is
    killed; the study then records trial 0 finished (as OptunaSearch does when a trial ends) and a
    trial asked for after the snapshot, before its Ray trial existed (as the searcher does)."""
    from nas.tune.reconcile import OWNER_ATTR

    config = experiment(tmp_path, n=2, scheduler="fifo", max_concurrent=1)
    env = {HOLD: "0:2", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = start(config, env=env)
    try:
        wait_until(lambda: held(tmp_path, 0, 2) and checkpointed(tmp_path, 0, 2), "trial 0 held in the snapshot", driver)
    finally:
        stop_group(driver)
    assert snapshot(tmp_path)[0][0] != "TERMINATED"
    s = study(tmp_path)
    s.tell(0, 0.125)
    orphan = s.ask()  # the clip baseline, waiting in the queue
    orphan.set_user_attr(OWNER_ATTR, s.trials[0].user_attrs[OWNER_ATTR])
    metrics = tmp_path / "runs" / "trial_0000" / "metrics.jsonl"
    mtime = metrics.stat().st_mtime_ns
    output = run_to_end(config, "--resume", env=env)

    trials = study(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE], output[-3000:]
    assert trials[0].value == 0.125 and list(trials[0].intermediate_values) == [1]  # not run again: only its first evaluation reported
    assert metrics.stat().st_mtime_ns == mtime
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines() if "heldout/shapes/loss" in line] == [2]
    assert trials[2].system_attrs["failed_trial"] == 1 and trials[2].user_attrs["baseline"] == "clip"
    assert "Optuna trial 1 was running but no restored Ray trial continues it" in output
    assert ray_values(tmp_path) == {0: 0.125, 2: trials[2].value}  # trial 0 counts once, with its recorded value


@pytest.mark.integration
def test_asha_stops_trials_early_and_the_study_says_so(tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app

    run_to_end(experiment(tmp_path))
    trials = study(tmp_path).get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    stopped = [t for t in trials if t.user_attrs["stopped_early"]]
    assert stopped and all(t.user_attrs["evaluations"] != "3/3" for t in stopped)
    results = (tmp_path / "runs" / "results.md").read_text()
    assert "stopped early by the scheduler, not ranked" in results
    exported = CliRunner().invoke(app, ["export", str(tmp_path / "ray" / "t"), "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    provenance = json.loads((tmp_path / "export" / "arch.json").read_text())["provenance"]
    best = trials[provenance["optuna_trial"]]
    assert provenance["search"] == "ray tune" and not best.user_attrs["stopped_early"]
    assert best.value == min(t.value for t in trials if not t.user_attrs["stopped_early"])
    report = CliRunner().invoke(app, ["report", str(tmp_path / "ray" / "t"), "--out", str(tmp_path / "ray.html")])
    assert report.exit_code == 0 and "3 figures" in report.output, report.output


@pytest.mark.integration
def test_a_multi_objective_study_runs_on_ray_and_ends_with_its_front(tmp_path):
    objective = {"kind": "multi", "costs": ["params", "flops"], "reference_point": {"heldout/shapes/loss": 4.0}}
    run_to_end(experiment(tmp_path, n=3, scheduler="fifo", objective=objective))
    trials = study(tmp_path).get_trials()
    assert [d.name for d in study(tmp_path).directions] == ["MINIMIZE"] * 3
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        assert t.values[0] == t.user_attrs["metrics"]["heldout/shapes/loss"]
        assert t.values[1] == float(t.user_attrs["params_total"]) and t.values[2] > 0
    front = json.loads((tmp_path / "runs" / "pareto.json").read_text())
    assert front["hypervolume"] > 0 and set(front["reference_point"]) == {"heldout/shapes/loss", "params", "flops"}
    assert front["baselines"]["msclip"]["trial"] == 0 and front["baselines"]["clip"]["trial"] == 1


def test_a_study_with_another_direction_is_refused(tmp_path, monkeypatch):
    """A study sharenas created for this very config, except that it maximizes: only the direction check stands in the way."""
    from nas.discrete.config import load_search_config
    from nas.discrete.records import fingerprint
    from nas.tune import driver
    from trainer.typed_config import ConfigError

    config = experiment(tmp_path)
    other = optuna.create_study(study_name="t", storage=f"sqlite:///{tmp_path}/study.db", direction="maximize")
    other.set_user_attr("sharenas_config", fingerprint(load_search_config(tmp_path / "search.yaml")))
    monkeypatch.setattr(driver, "_init_ray", lambda address: pytest.fail("the experiment started on a study that maximizes"))
    with pytest.raises(ConfigError, match="study 't' optimizes maximize but the config says minimize"):
        driver.run_tune(config)


@pytest.mark.integration
@pytest.mark.ray_cluster
def test_job_submission_to_a_token_authenticated_head(tmp_path, ray_head):
    from ray.job_submission import JobStatus, JobSubmissionClient

    dashboard = ray_head.exports["SHARENAS_RAY_DASHBOARD"]
    token = ray_head.token
    config = experiment(tmp_path, n=2)
    with pytest.raises(Exception, match="401|[Uu]nauthori|[Aa]uthenticat"):
        JobSubmissionClient(dashboard).submit_job(entrypoint="true")
    client = JobSubmissionClient(dashboard, headers={"Authorization": f"Bearer {token}"})
    job = client.submit_job(
        entrypoint=f"{sys.executable} -m nas.cli tune {config} --address auto --set scheduler.kind=fifo",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    deadline = time.time() + 600
    while (status := client.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(3)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
    assert len(completed(tmp_path)) == 2


@pytest.mark.integration
def test_gumbel_searches_as_a_ray_workload_write_an_arch_json_and_a_retried_one_continues_from_its_saved_state(tmp_path):
    """The search of grid point seed=0 fails once right after saving its state at step 4; Tune's retry
    continues from there (`search gumbel --resume`) and ends where the search run in one go ends."""
    from test_gumbel_search import SHORT

    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search
    from trainer.typed_config import load_config

    gumbel = {**SHORT, "train": {**SHORT["train"], "checkpoint_every": 4}, "eval": {"nmi_pairs": 0, "every_epochs": None}}
    (tmp_path / "gumbel.yaml").write_text(yaml.safe_dump(gumbel))
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({"search": "gumbel.yaml", "kind": "gumbel", "experiment": "g", "storage_path": str(tmp_path / "ray"),
                                      "grid": {"train.seed": [0, 1]}, "max_concurrent": 2, "max_failures": 1}))
    run_to_end(config, env={FAIL_ONCE: "seed=0:4"})
    root = tmp_path / "ray" / "g-searches"
    archs = sorted(root.glob("*/arch.json"))
    assert [a.parent.name for a in archs] == ["seed=0", "seed=1"]
    for arch in archs:
        assert json.loads(arch.read_text())["schema"] == "sharenas/arch/v2"
    assert (root / ".failed-once-seed=0-4").is_file()
    frame = pd.read_csv(root / "ray_results.csv")
    assert dict(zip(frame["config/train.seed"], frame["resumed_from_step"])) == {0: 4, 1: 0}

    reference = tmp_path / "uninterrupted"
    run_gumbel_search(load_config(tmp_path / "gumbel.yaml", GumbelConfig, ["train.seed=0"]), reference, retrain=False)
    for name in ("gates.json", "policy.json"):
        assert (root / "seed=0" / name).read_text() == (reference / name).read_text(), name
    retried, whole = (json.loads((d / "arch.json").read_text()) for d in (root / "seed=0", reference))
    assert retried["metrics"] == whole["metrics"]
    assert retried["provenance"]["candidates"] == whole["provenance"]["candidates"]


def test_a_local_ray_start_that_times_out_is_tried_again(monkeypatch):
    """Ray's fixed 30 s node-registration limit can pass on an overloaded machine: the driver retries
    that failure of a local start, and only that one."""
    import ray

    from nas.tune import driver

    calls = []

    def init(**kwargs):
        calls.append("init")
        if len(calls) == 1:
            raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    driver._init_ray(None)
    assert calls == ["init", "shutdown", "init"]

    def broken(**kwargs):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        driver._init_ray(None)
