"""The Optuna search end to end with real (very short) training on the embedded digits: attributes and
artifacts of each trial, NaN trials, resuming, grid + duplicate reuse, a killed worker, and two
workers on one study (journal file; PostgreSQL with the `postgres` marker)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from nas.discrete.config import load_search_config
from nas.discrete.samplers import build_pruner, build_sampler
from nas.discrete.search import run_search
from nas.discrete.storage import open_storage
from nas.objective import MetricNotFound
from search_spaces import SharingPolicy, count_params, get_preset
from trainer.loop import train
from trainer.typed_config import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TRAIN = {
    "model": {"size": "tiny"},
    "data": {"source": "digits", "digit_repeats": 1, "max_eval_images": 60},
    "optim": {"warmup_epochs": None, "warmup_steps": 1},
    "train": {"epochs": None, "steps": 2, "batch_size": 16, "num_threads": 1, "progress": False, "checkpoint_every": None, "log_every": 1},
    "eval": {"every_epochs": None, "every_steps": None, "nmi_pairs": 0, "batch_size": 64},
}



def search_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    cfg = {
        "study_name": "t",
        "out_dir": str(tmp_path / "runs"),
        "n_trials": 3,
        "baselines": ["msclip"],
        "objective": {"metric": "zeroshot/digits/top1"},
        "sampler": {"seed": 0, "startup_trials": 2},
        "pruner": {"kind": "none"},
        "heartbeat": {"interval": 1, "grace_period": 3, "max_retry": 2},
        "space": {"layouts": ["share_last", "mask"], "parallel_branch": False},
        **TRAIN,
    }
    cfg.update(overrides)
    return cfg


def load_study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url).storage)


def cli(*args: str) -> list[str]:
    """The `sharenas` command line, run as a separate process."""
    return [sys.executable, "-m", "nas.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_search_records_attributes_artifacts_and_survives_a_nan_trial(tmp_path: Path) -> None:
    cfg = load_search_config(search_config(tmp_path, param_budget="3.9M"))
    url = f"sqlite:///{tmp_path / 'study.db'}"

    def train_with_nan(cfg, run_dir, **kw):
        if Path(run_dir).name == "trial_0001":
            cfg.optim.lr = 1e30  # the first update makes the weights overflow: the loss of step 2 is not finite
        return train(cfg, run_dir, **kw)

    result = run_search(cfg, storage=url, train_fn=train_with_nan)
    study = load_study(url, "t")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = trials[1]
    assert re.match(r"diverged: the loss is (nan|inf) at step 2", failed.user_attrs["fail_reason"])

    baseline = trials[0]
    # the baseline is enqueued as its point of the space (NSGA-II's intersection search space needs it)
    assert baseline.params == {"layout": "share_last", "share_last_k": 12} and baseline.user_attrs["baseline"] == "msclip"
    assert SharingPolicy.from_dict(baseline.user_attrs["policy"]) == get_preset("msclip", "tiny")
    for t in (trials[0], trials[2]):
        attrs = t.user_attrs
        policy = SharingPolicy.from_dict(attrs["policy"])
        assert attrs["params"] == count_params(policy, "tiny").to_dict()
        assert attrs["params_total"] == attrs["params"]["total"]
        assert attrs["within_budget"] == (attrs["params_total"] <= 3_900_000)
        assert t.constraints == {"params": attrs["params_total"] - 3_900_000}
        assert attrs["metrics"]["zeroshot/digits/top1"] == t.value
        run_dir = Path(attrs["run_dir"])
        arch = json.loads((run_dir / "arch.json").read_text())
        assert arch["schema"] == "sharenas/arch/v2" and arch["policy"] == attrs["policy"]
        assert arch["metrics"] == attrs["metrics"] and arch["provenance"]["trial"] == t.number
        assert [m.filename for m in get_all_artifact_meta(t, storage=study._storage)] == ["arch.json"]
        assert t.intermediate_values == {2: t.value}  # reported for the pruner

    assert result.states == {"COMPLETE": 2, "FAIL": 1}
    csv_lines = (tmp_path / "runs" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("trial,policy,baseline,zeroshot/digits/top1,delta_metric")
    markdown = (tmp_path / "runs" / "results.md").read_text()
    assert "trial 1 (" in markdown and failed.user_attrs["fail_reason"] in markdown
    from optuna_dashboard import get_note

    assert get_note(study) == markdown

    # Resuming with a larger budget keeps every trial and enqueues no second baseline.
    run_search(cfg, storage=url, n_trials=4)
    again = load_study(url, "t").get_trials()
    assert len(again) == 4 and [t.state for t in again[:3]] == [t.state for t in trials]
    assert [t.user_attrs.get("baseline") for t in again].count("msclip") == 1
    assert again[3].state == TrialState.COMPLETE and again[3].number == 3


def test_resuming_with_another_space_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(load_search_config(search_config(tmp_path, n_trials=1)), storage=url)
    changed = load_search_config(search_config(tmp_path, n_trials=2, space={"layouts": ["mask"]}))
    with pytest.raises(ConfigError, match=r"created with different settings \(space.layouts"):
        run_search(changed, storage=url)


def test_grid_runs_each_configuration_once_and_reuses_duplicate_policies(tmp_path: Path) -> None:
    space = {"layouts": ["share_last", "sublayers"], "share_last_k": [11, 12], "sublayer_combos": ["attn+ffn"],
             "early_specialization": False, "parallel_branch": False}
    cfg = load_search_config(search_config(tmp_path, n_trials=10, sampler={"kind": "grid"}, space=space))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls = []

    def counting_train(cfg, run_dir, **kw):
        calls.append(Path(run_dir).name)
        return train(cfg, run_dir, **kw)

    result = run_search(cfg, storage=url, train_fn=counting_train)
    trials = load_study(url, "t").get_trials()
    # The msclip baseline is the grid point share_last 12, so the grid does not enqueue it again; it adds
    # share-last-11 and attn+ffn shared in every layer (another point, the same policy as msclip: not trained again).
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].user_attrs["baseline"] == "msclip" and trials[0].params == {"layout": "share_last", "share_last_k": 12}
    assert len(calls) == 2
    dup = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(dup) == 1 and dup[0].params["layout"] == "sublayers" and dup[0].user_attrs["duplicate_of"] == 0
    assert dup[0].value == trials[0].value
    assert result.states == {"COMPLETE": 3}


def test_multi_objective_study_minimizes_parameters_with_nsga2(tmp_path: Path) -> None:
    objective = {"kind": "multi", "metric": "zeroshot/digits/top1"}
    cfg = load_search_config(search_config(tmp_path, n_trials=4, objective=objective, sampler={"kind": "nsga2", "seed": 0, "population_size": 2}))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(cfg, storage=url)
    study = load_study(url, "t")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["zeroshot/digits/top1", "params"]
    trials = study.get_trials()
    for t in trials:
        assert t.state == TrialState.COMPLETE
        assert t.values == [t.user_attrs["metrics"]["zeroshot/digits/top1"], float(t.user_attrs["params_total"])]
        assert t.intermediate_values == {}  # Optuna takes no reports from multi-objective trials
    # NSGA-II numbers the generation of every trial it samples (the enqueued baseline has none): the first
    # `population_size` sampled trials form generation 0, and the next one is a child of the parents that
    # its elitist selection drew from generation 0 (cached in the study's system attributes).
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in trials]
    assert generations == [None, 0, 0, 1], f"NSGA-II generations per trial: {generations}"
    parents = study._storage.get_study_system_attrs(study._study_id).get("NSGAIISampler:parent:1")
    assert sorted(parents or []) == [trials[1]._trial_id, trials[2]._trial_id], f"generation 1's parents: {parents}"


def test_samplers_and_pruners_follow_the_config(tmp_path: Path) -> None:
    def build(**over):
        cfg = load_search_config(search_config(tmp_path, **over))
        return type(build_sampler(cfg, 0)).__name__, type(build_pruner(cfg)).__name__

    assert build() == ("TPESampler", "NopPruner")
    assert build(pruner={"kind": "median"}) == ("TPESampler", "MedianPruner")
    assert build(pruner={"kind": "hyperband"}, sampler={"kind": "random"}) == ("RandomSampler", "HyperbandPruner")
    assert build(objective={"kind": "multi"}, pruner={"kind": "auto"}) == ("TPESampler", "NopPruner")
    assert build(objective={"kind": "multi"}, sampler={"kind": "nsga2"}) == ("NSGAIISampler", "NopPruner")


def test_a_wrong_metric_name_stops_the_search_with_the_available_keys(tmp_path: Path) -> None:
    cfg = load_search_config(search_config(tmp_path, n_trials=3, objective={"metric": "zeroshot/digit/top1"}))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(MetricNotFound, match=r"'zeroshot/digit/top1' is not among the evaluation metrics \(.*zeroshot/digits/top1"):
        run_search(cfg, storage=url)
    trials = load_study(url, "t").get_trials()
    assert len(trials) == 1 and trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"].startswith("MetricNotFound: objective.metric")


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
def test_killed_worker_trial_fails_and_is_retried(tmp_path: Path) -> None:
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(search_config(tmp_path, n_trials=2)))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(cli("search", "optuna", str(config), "--storage", url), cwd=ROOT, env=env(), stdout=log, stderr=log)

    def second_trial_training() -> bool:
        try:
            trials = load_study(url, "t").get_trials()
        except KeyError:  # study not created yet
            return False
        # `run_dir` is set once all parameters are drawn, right before training starts
        return len(trials) >= 2 and trials[1].state == TrialState.RUNNING and "run_dir" in trials[1].user_attrs

    try:
        _wait_for(second_trial_training, 120, "the worker to start training its second trial")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    first = load_study(url, "t").get_trials()[0]
    arch = Path(first.user_attrs["run_dir"]) / "arch.json"
    written = arch.stat().st_mtime_ns

    run_search(load_search_config(config), storage=url)
    trials = load_study(url, "t").get_trials()
    assert trials[0].state == TrialState.COMPLETE and trials[0].datetime_complete == first.datetime_complete
    assert arch.stat().st_mtime_ns == written
    assert trials[1].state == TrialState.FAIL and "fail_reason" not in trials[1].user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[1].params
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "retried as trial" in (tmp_path / "runs" / "results.md").read_text()


def _two_workers(tmp_path: Path, url: str, study: str, n_trials: int) -> None:
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(search_config(tmp_path, n_trials=n_trials, study_name=study)))
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    workers = [
        subprocess.Popen(cli("search", "optuna", str(config), "--storage", url), cwd=ROOT, env=env(), stdout=log, stderr=log)
        for log in logs
    ]
    codes = [w.wait(timeout=300) for w in workers]
    assert codes == [0, 0], [(tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)]
    trials = load_study(url, study).get_trials()
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get("baseline") for t in trials].count("msclip") == 1
    run_dirs = {t.user_attrs["run_dir"] for t in trials if "duplicate_of" not in t.user_attrs}
    assert all((Path(d) / "arch.json").is_file() for d in run_dirs)
    both = [(tmp_path / f"worker{i}.log").read_text().count("[search] trial ") for i in range(2)]
    assert sum(both) == n_trials


@pytest.mark.integration
def test_two_workers_share_a_journal_study(tmp_path: Path) -> None:
    _two_workers(tmp_path, f"journal:{tmp_path / 'study.journal'}", "journal-study", 3)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """SHARENAS_TEST_POSTGRES_URL, else a fresh database on a server started by scripts/postgres.sh
    (dropped afterwards; the server is stopped if this fixture started it)."""
    url = os.environ.get("SHARENAS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    script = ROOT / "scripts" / "postgres.sh"
    database = f"sharenas_test_{uuid.uuid4().hex[:8]}"
    with socket.socket() as probe:  # a port of its own: another checkout's suite may run a server beside this one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg_env = {**os.environ, "SHARENAS_PG_PORT": str(port), "SHARENAS_PG_DB": database}
    running = subprocess.run([script, "status"], env=pg_env, capture_output=True).returncode == 0
    started = subprocess.run([script, "start", "--no-install"], env=pg_env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"no PostgreSQL server: {started.stderr.strip().splitlines()[-1]} (or set SHARENAS_TEST_POSTGRES_URL)")
    url = started.stdout.strip()
    yield url
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE "{database}" WITH (FORCE)'))
    engine.dispose()
    if not running:
        subprocess.run([script, "stop"], env=pg_env, capture_output=True)


@pytest.mark.integration
@pytest.mark.postgres
def test_two_workers_share_a_postgres_study(tmp_path: Path, postgres_url: str) -> None:
    _two_workers(tmp_path, postgres_url, f"pg-{uuid.uuid4().hex[:8]}", 3)
