"""`sharenas tune experiments/tiny/tune.yaml` on a two-node cluster of this machine (1 CPU per node)
with PostgreSQL Optuna storage: two concurrent trials run on the two nodes, the worker node is killed
mid-trial, and its trial is retried from its checkpoint on the node that remains. Several minutes:
in the integration target (`make test-integration`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from optuna.trial import TrialState

from nas.tune.cluster import Node, node_processes, stop_processes
from ray_clusters import cluster  # noqa: F401 (a fixture)
from test_optuna_search import postgres_url  # noqa: F401 (a fixture)
from test_tune import HOLD, experiment, uninterrupted  # noqa: F401 (a fixture)
from tune_driver import ROOT, held, checkpointed, ray_values, reports, start, stop_group, study, wait_until

STATE = """
import json, sys
from ray.util.state import list_actors, list_nodes
nodes = {n.node_id: n.is_head_node for n in list_nodes(address=sys.argv[1])}
actors = {a.pid: a.node_id for a in list_actors(address=sys.argv[1], limit=10000, detail=True) if a.class_name == "ImplicitFunc"}
print(json.dumps({"head": [n for n, head in nodes.items() if head], "actors": actors}))
"""


def ray_state(cluster) -> tuple[str, dict[int, str]]:
    """From Ray's state API: the head's node id, and the node of every trial actor (alive or dead), by pid."""
    done = subprocess.run([sys.executable, "-c", STATE, cluster.exports["SHARENAS_RAY_DASHBOARD"]], env=cluster.env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout)
    (head,) = state["head"]
    return head, {int(pid): node for pid, node in state["actors"].items()}


def held_pid(tmp_path, trial: int, step: int) -> int:
    """The process of the trial that waits at this step (its SHARENAS_TUNE_HOLD marker says)."""
    return int((tmp_path / "runs" / f".held-{trial}-{step}").read_text().split("pid")[1])


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.ray_cluster
def test_two_nodes_run_two_trials_at_once_and_a_killed_node_s_trial_is_retried_on_the_other_from_its_checkpoint(
        tmp_path, cluster, postgres_url, uninterrupted):
    cluster.start("--multi-node", "--num-cpus", "1")
    cluster.join("--num-cpus", "1")
    worker = Node.load(cluster.path / "nodes" / "worker-1.json")
    experiment(tmp_path, n=2)  # the short trial recipe of the tune tests: 6 steps, evaluated every 2
    search = yaml.safe_load((tmp_path / "search.yaml").read_text())
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({**search, "storage": postgres_url}))
    overrides = [f"search={tmp_path / 'search.yaml'}", f"storage_path={tmp_path / 'ray'}", "experiment=t", "num_samples=2", "max_concurrent=2",
                 "scheduler.kind=fifo"]
    env = {**cluster.env, HOLD: "0:2,1:2", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = start(ROOT / "experiments" / "tiny" / "tune.yaml", "--address", cluster.exports["SHARENAS_RAY_ADDRESS"],
                   *(a for o in overrides for a in ("--set", o)), env=env, cwd=tmp_path)
    try:
        # both trials have reported step 2 with its checkpoint, and wait
        wait_until(lambda: all(held(tmp_path, t, 2) and checkpointed(tmp_path, t, 2) for t in (0, 1)), "both trials held at step 2", driver)
        head, actors = ray_state(cluster)
        pids = {t: held_pid(tmp_path, t, 2) for t in (0, 1)}
        assert len({actors[pids[0]], actors[pids[1]]}) == 2  # the two trials run on two nodes at once
        (killed,) = [t for t in (0, 1) if actors[pids[t]] != head]
        assert pids[killed] in node_processes(worker)
        cluster.processes()  # recorded, for the stop check
        stop_processes(lambda: node_processes(worker), grace=0)  # the worker node dies: SIGKILL to all its processes
        (tmp_path / "runs" / f".release-{1 - killed}-2").touch()  # the head's trial goes on
        output, _ = driver.communicate(timeout=900)
    finally:
        stop_group(driver)
    assert driver.returncode == 0, output[-4000:]

    trials = study(tmp_path, postgres_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, output[-3000:]  # every trial counted once, none failed
    assert sorted(t.user_attrs["baseline"] for t in trials) == ["clip", "msclip"]
    for t in trials:
        assert t.value == uninterrupted(tmp_path / "search.yaml", t), t.number  # as training the policy in one go gives
        assert t.user_attrs["evaluations"] == "3/3" and not t.user_attrs["stopped_early"]
    assert ray_values(tmp_path) == {t.number: t.value for t in trials}  # Tune's record: each trial once, with the study's value
    retried = reports(tmp_path, killed)
    assert [r["step"] for r in retried] == [2, 4, 6]  # retried from the step-2 checkpoint: step 2 was not trained again
    assert retried[0]["pid"] == pids[killed] and retried[1]["pid"] == retried[2]["pid"] != pids[killed]
    _, actors = ray_state(cluster)
    assert actors[retried[1]["pid"]] == head  # the retry ran on the node that remained
    assert [r["step"] for r in reports(tmp_path, 1 - killed)] == [2, 4, 6]
