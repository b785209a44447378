"""`sharenas tune` on the real Ray engine: ASHA, the shared Optuna study, retries from checkpoints,
--resume after the driver is killed, and `ray job submit` to a token-authenticated head."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from test_optuna_search import TRAIN, search_config

ray = pytest.importorskip("ray", reason="ray[default,tune] is not installed")

ROOT = Path(__file__).resolve().parents[1]
SHARENAS = [sys.executable, "-m", "nas.cli"]
EVALUATIONS = 3  # 6 steps, evaluated every 2


def experiment(tmp_path: Path, n: int = 6, scheduler: str = "asha") -> Path:
    """A short study on a continuous objective (the held-out loss: no ties for ASHA to keep)."""
    train = {
        **TRAIN, "data": {"source": "shapes", "num_shapes": 120, "shapes_zeroshot_per_class": 2, "max_eval_images": 40, "heldout_shapes": 64},
        "train": {**TRAIN["train"], "steps": 6}, "eval": {**TRAIN["eval"], "every_steps": 2, "heldout_batch_size": 32},
    }
    search = search_config(tmp_path, baselines=["msclip", "clip"], n_trials=n, train=train,
                           objective={"metric": "heldout/shapes/loss", "direction": "minimize"})
    search["storage"] = f"sqlite:///{tmp_path}/study.db"
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({
        "search": "search.yaml", "experiment": "t", "storage_path": str(tmp_path / "ray"), "num_samples": n, "max_concurrent": 2,
        # A trial reaching the first rung goes on only if it is the best there so far (reduction factor 4):
        # with 6 trials, the chance that ASHA stops none is 1/720.
        "scheduler": {"kind": scheduler, "grace_period": 1, "reduction_factor": 4}, "max_failures": 2,
    }))
    return config


def study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/study.db")


def completed(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    if not (tmp_path / "study.db").is_file():
        return []
    try:
        return [t for t in study(tmp_path).get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    except Exception:  # the study is being created
        return []


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([*SHARENAS, "tune", str(config), *args], cwd=config.parent, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run_to_end(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `sharenas tune` to the end; returns its output (the run must succeed)."""
    process = start(config, *args, env=env)
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        stop_group(process)
    assert process.returncode == 0, output[-4000:]
    return output


def stop_group(process: subprocess.Popen) -> None:
    """The driver and the local Ray it started (its own session), and nothing else."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def test_tune_retries_a_failed_trial_from_its_checkpoint_and_resumes_after_the_driver_is_killed(tmp_path):
    config = experiment(tmp_path, n=4, scheduler="fifo")  # every trial runs to the end: the injected failure is reached
    # Optuna trial 1 (the clip baseline) fails once at its evaluation of step 4: retried from step 2.
    env = {"SHARENAS_TUNE_FAIL_ONCE": "1:4", "TUNE_GLOBAL_CHECKPOINT_S": "1"}  # Tune saves its state every second
    driver = start(config, env=env)
    deadline = time.time() + 600
    try:
        while len(completed(tmp_path)) < 2:
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.time() < deadline, "no two trials finished within 10 minutes"
            time.sleep(2)
        time.sleep(4)  # Tune has recorded those trials as finished
    finally:
        stop_group(driver)  # interrupt the experiment mid-way
    finished = {t.number: (tmp_path / "runs" / f"trial_{t.number:04d}" / "metrics.jsonl").stat().st_mtime_ns for t in completed(tmp_path)}
    assert len(finished) < 4, "the experiment finished before it could be interrupted"
    output = run_to_end(config, "--resume", env=env)
    trials = study(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, output[-3000:]
    assert [t.user_attrs.get("baseline") for t in trials[:2]] == ["msclip", "clip"]
    for number, mtime in finished.items():  # finished trials were not run again
        assert (tmp_path / "runs" / f"trial_{number:04d}" / "metrics.jsonl").stat().st_mtime_ns == mtime
    assert (tmp_path / "runs" / ".failed-once-1-4").is_file()
    retried = trials[1]
    assert retried.user_attrs["evaluations"] == f"{EVALUATIONS}/{EVALUATIONS}" and not retried.user_attrs["stopped_early"]
    ray_dir = next((tmp_path / "ray" / "t").glob("optuna_trial_*optuna_trial=1_*"))
    reported = [json.loads(line)["step"] for line in (ray_dir / "result.json").read_text().splitlines()]
    assert reported == [2, 4, 6]  # the retry resumed from the step-2 checkpoint: step 2 was not trained and reported again
    for t in trials:
        assert t.user_attrs["policy"]["schema"] == "sharenas/policy/v1" and t.user_attrs["evaluations"] == "3/3"
    assert (tmp_path / "runs" / "ray_results.csv").read_text().count("\n") >= 4


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


def test_a_study_with_another_direction_is_refused(tmp_path):
    from nas.tune.driver import run_tune

    config = experiment(tmp_path)
    optuna.create_study(study_name="t", storage=f"sqlite:///{tmp_path}/study.db", direction="minimize")
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="not created by sharenas|optimizes minimize"):
        run_tune(config)


@pytest.mark.ray_cluster
def test_job_submission_to_a_token_authenticated_head(tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    import shutil
    import tempfile

    # Ray's unix sockets live under the temp dir, and a socket path may not exceed 107 bytes.
    cluster = Path(tempfile.mkdtemp(prefix="snray-", dir="/tmp"))
    started = subprocess.run(["bash", str(ROOT / "scripts" / "ray_cluster.sh"), "start", str(cluster)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    try:
        if started.returncode != 0:
            pytest.skip(f"a Ray head could not start here: {started.stderr.strip().splitlines()[-1:]}")
        dashboard = f"http://127.0.0.1:{(cluster / 'dashboard_port').read_text().strip()}"
        token = (cluster / "auth_token").read_text().strip()
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
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "ray_cluster.sh"), "stop", str(cluster)], cwd=ROOT, timeout=120)
    assert not subprocess.run(["pgrep", "-f", str(cluster / "tmp")], capture_output=True).stdout.strip()
    shutil.rmtree(cluster, ignore_errors=True)


def test_gumbel_searches_as_a_ray_workload_each_write_an_arch_json(tmp_path):
    from test_gumbel_search import SHORT

    (tmp_path / "gumbel.yaml").write_text(yaml.safe_dump({**SHORT, "eval": {"nmi_pairs": 0, "every_epochs": None}}))
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({"search": "gumbel.yaml", "kind": "gumbel", "experiment": "g", "storage_path": str(tmp_path / "ray"),
                                      "grid": {"train.seed": [0, 1]}, "max_concurrent": 2}))
    run = subprocess.run([*SHARENAS, "tune", str(config)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=900, start_new_session=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    archs = sorted((tmp_path / "ray" / "g-searches").glob("*/arch.json"))
    assert [a.parent.name for a in archs] == ["seed=0", "seed=1"]
    for arch in archs:
        assert json.loads(arch.read_text())["schema"] == "sharenas/arch/v1"
