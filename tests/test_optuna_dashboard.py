"""`sharenas dashboard` serves a study, its note and its trial artifacts on 127.0.0.1."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna_dashboard import save_note

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on `port` (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):  # no tcp6 table without IPv6
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


@contextlib.contextmanager
def _dashboard(url: str, tmp_path: Path) -> Iterator[tuple[int, dict]]:
    """`sharenas dashboard` on a free port, stopped (by its own process handle) on exit; yields the
    port and its first answer to /api/studies."""
    port = _free_port()
    log = open(tmp_path / "dashboard.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "dashboard", "--storage", url, "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log,
    )
    try:
        deadline = time.monotonic() + 300  # guards against a hang only: imports take minutes on a loaded machine
        while True:
            try:
                studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, (tmp_path / "dashboard.log").read_text()
                assert time.monotonic() < deadline, "the dashboard did not answer within 300 s"
                time.sleep(0.3)
        yield port, studies
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.integration
def test_dashboard_serves_the_study_note_and_artifacts_on_localhost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="dash-study", direction="maximize")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    study.set_user_attr("artifact_dir", str(artifacts))
    trial = study.ask()
    trial.suggest_categorical("layout", ["share_last", "mask"])
    (tmp_path / "arch.json").write_text('{"schema": "sharenas/arch/v1"}\n')
    artifact_id = upload_artifact(artifact_store=FileSystemArtifactStore(str(artifacts)), file_path=str(tmp_path / "arch.json"), study_or_trial=trial)
    study.tell(trial, 12.5)
    save_note(study, "## results vs msclip")

    with _dashboard(url, tmp_path) as (port, studies):
        summaries = studies["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["dash-study"]
        study_id = summaries[0]["study_id"]
        detail = json.loads(_get(f"http://127.0.0.1:{port}/api/studies/{study_id}"))
        assert detail["trials"][0]["values"] == [12.5]
        assert detail["note"]["body"] == "## results vs msclip"
        body = _get(f"http://127.0.0.1:{port}/artifacts/{study_id}/{trial._trial_id}/{artifact_id}")
        assert body == b'{"schema": "sharenas/arch/v1"}\n'
        announced = (tmp_path / "dashboard.log").read_text()
        assert f"optuna-dashboard on http://127.0.0.1:{port}/" in announced, f"the dashboard did not announce its address: {announced!r}"
        addresses = _listen_addresses(port)  # bound to 127.0.0.1 only, not 0.0.0.0 or an IPv6 address
        assert addresses == {"0100007F"}, f"sockets listening on port {port} (hex, as in /proc/net/tcp*): {addresses or 'none found'}"


@pytest.mark.integration
def test_dashboard_shows_a_multi_objective_study_front_with_its_objective_names(tmp_path: Path) -> None:
    """The study `search optuna experiments/tiny/pareto.yaml` creates (directions, metric names,
    baselines enqueued), with values told by hand: the dashboard's Pareto-front view is drawn from
    the study's directions, objective names and best trials, so those are what it must serve."""
    from nas.discrete.config import load_search_config
    from nas.discrete.storage import open_storage
    from nas.discrete.worker import StudyWorker

    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = load_search_config(ROOT / "experiments/tiny/pareto.yaml", [f"out_dir={tmp_path / 'runs'}"])
    study = StudyWorker(cfg, open_storage(url), train_fn=lambda *a, **k: None).study
    # loss, params, FLOPs, latency for the three enqueued baselines; the third is dominated by the first
    values = {"msclip": [1.70, 3.8e6, 9.0e7, 0.20], "clip": [1.60, 4.4e6, 8.0e7, 0.18], "msclip-s": [2.04, 3.9e6, 9.5e7, 0.25]}
    told = {}
    for _ in values:
        trial = study.ask()
        name = trial.user_attrs["baseline"]
        study.tell(trial, values[name])
        told[name] = trial.number

    with _dashboard(url, tmp_path) as (port, studies):
        summary, = studies["study_summaries"]
        assert summary["study_name"] == "tiny-pareto"
        detail = json.loads(_get(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}"))
    assert detail["directions"] == ["minimize"] * 4
    assert detail["objective_names"] == cfg.objective.names
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted([told["msclip"], told["clip"]])
    assert {t["number"]: t["values"] for t in detail["trials"]}[told["msclip-s"]] == values["msclip-s"]


@pytest.mark.integration  # the dashboard command in a process of its own: make test-integration
@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("mysql://x@localhost/db", "error: storage: 'mysql://x@localhost/db' is not supported; use sqlite:///FILE"),
        ("sqlite:///{tmp}/missing.db", "error: storage: {tmp}/missing.db does not exist"),
    ],
)
def test_dashboard_reports_a_bad_storage_in_one_line(tmp_path: Path, storage: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nas.cli", "dashboard", "--storage", storage.format(tmp=tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "missing.db").exists()
