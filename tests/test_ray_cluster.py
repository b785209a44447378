"""scripts/ray_cluster.sh: a head, a worker node that joins it, a stop that leaves no process and no
listening port behind, and the listening ports of docs/clusters.md, compared with the kernel's socket
table of a running cluster and probed with and without the token."""
from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from nas.tune.cluster import WORKER_ROLE, Listener, roles, stop_processes, session_processes
from ray_clusters import Cluster, cluster  # noqa: F401 (a fixture)
from tune_driver import ROOT, record_session

grpc = pytest.importorskip("grpc", reason="ray[default] is not installed")

DOCS = ROOT / "docs" / "clusters.md"
# role -> how to call it: a gRPC method (an empty request is valid for each) or an HTTP path
PROBES = {
    "gcs": ("grpc", "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo"),
    "node_manager": ("grpc", "/ray.rpc.NodeManagerService/GetNodeStats"),
    "object_manager": ("grpc", "/ray.rpc.ObjectManagerService/Pull"),
    "dashboard_agent_grpc": ("grpc", "/ray.rpc.ReporterService/GetTraceback"),
    "client_server": ("grpc", "/ray.rpc.RayletDriver/ClusterInfo"),
    WORKER_ROLE: ("grpc", "/ray.rpc.CoreWorkerService/GetCoreWorkerStats"),
    "dashboard": ("http", "/api/jobs/"),
    "dashboard_agent_http": ("http", "/api/job_agent/jobs/"),
    "runtime_env_agent": ("http", "/get_or_create_runtime_env"),
    "metrics_export": ("http", "/metrics"),
    "autoscaler_metrics": ("http", "/metrics"),
    "dashboard_metrics": ("http", "/metrics"),
}
# Actors of 1 CPU each, one per node of 1 CPU: every node then runs a worker process (the `worker` role).
WORKERS = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
@ray.remote(num_cpus=1)
class Idle:
    def node(self):
        return ray.get_runtime_context().get_node_id()
actors = [Idle.remote() for _ in range(int(sys.argv[2]))]
print(" ".join(ray.get([a.node.remote() for a in actors])), flush=True)
sys.stdin.read()
"""


def documented() -> dict[str, dict[str, object]]:
    """docs/clusters.md's port table: role -> where it listens on a single-node head and on a multi-node
    cluster (sets of `127.0.0.1`, `interface`, `all interfaces`) and whether it needs the token."""
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|$", DOCS.read_text(), re.M)
    assert rows, f"no port table in {DOCS}"
    return {role: {"single": {a.strip() for a in single.split("+")}, "multi": {a.strip() for a in multi.split("+")},
                   "token": protection.strip().startswith("token")} for role, single, multi, protection in rows}


def kind(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return "127.0.0.1" if ip.is_loopback else "all interfaces" if ip.is_unspecified else "interface"


def observed(cluster: Cluster) -> dict[str, dict[str, set]]:
    """role -> the kinds of address it listens on and its listeners, for every listener of the cluster."""
    known = roles(cluster.path)
    found: dict[str, dict[str, set]] = {}
    for listener in cluster.listeners():
        role = known.get(listener.port, ("", WORKER_ROLE))[1]
        entry = found.setdefault(role, {"kinds": set(), "listeners": set()})
        entry["kinds"].add(kind(listener.address))
        entry["listeners"].add(listener)
    return found


def answer(role: str, listener: Listener, interface: str, token: str | None) -> str:
    """What the listener answers a call of its role: a gRPC status name or an HTTP status."""
    host = interface if ipaddress.ip_address(listener.address).is_unspecified else listener.address
    host = f"[{host}]" if ":" in host else host
    how, target = PROBES[role]
    if how == "grpc":
        with grpc.insecure_channel(f"{host}:{listener.port}") as channel:
            call = channel.unary_unary(target, request_serializer=lambda x: x, response_deserializer=lambda x: x)
            try:
                call(b"", metadata=[("authorization", f"Bearer {token}")] if token else [], timeout=20)
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name
    request = urllib.request.Request(f"http://{host}:{listener.port}{target}", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return str(response.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)


@contextmanager
def workers(cluster: Cluster, count: int) -> Iterator[list[str]]:
    """A driver holding `count` actors of 1 CPU; yields the node id each runs on."""
    driver = subprocess.Popen([sys.executable, "-c", WORKERS, cluster.exports["SHARENAS_RAY_ADDRESS"], str(count)], env=cluster.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    session = record_session(driver.pid)
    try:
        line = driver.stdout.readline()
        assert line.strip(), driver.stderr.read()[-3000:]
        yield line.split()
    finally:
        stop_processes(lambda: session_processes(*session), grace=5)
        driver.wait(timeout=60)


def check_against_docs(cluster: Cluster, column: str, interface: str) -> None:
    """Every listener has a documented role and listens where the table says; a role that needs the
    token refuses a call without it and takes one with it; an unauthenticated one answers without it."""
    table, found = documented(), observed(cluster)
    assert set(found) == set(table), f"roles listening: {sorted(found)}; documented: {sorted(table)}"
    for role, entry in found.items():
        assert entry["kinds"] == table[role][column], (role, entry["kinds"], table[role][column])
        for listener in entry["listeners"]:
            without, with_token = answer(role, listener, interface, None), answer(role, listener, interface, cluster.token)
            if table[role]["token"]:
                assert without in ("UNAUTHENTICATED", "401") and with_token not in ("UNAUTHENTICATED", "401"), (role, listener, without, with_token)
            else:
                assert without == "200", (role, listener, without)


@pytest.mark.ray_cluster
def test_a_single_node_head_listens_on_loopback_only_as_documented_and_stop_leaves_nothing(cluster):
    cluster.start("--num-cpus", "1")
    with workers(cluster, 1):
        check_against_docs(cluster, "single", "127.0.0.1")
        assert {kind(l.address) for l in cluster.listeners()} == {"127.0.0.1"}
    refused = subprocess.run(["bash", str(ROOT / "scripts" / "ray_cluster.sh"), "join", str(cluster.path)], capture_output=True, text=True)
    assert refused.returncode == 1 and "single-node" in refused.stderr
    cluster.stop()  # no process alive, no port listening


@pytest.mark.ray_cluster
def test_a_worker_node_joins_and_the_ports_of_both_nodes_are_as_documented_and_stop_leaves_nothing(cluster):
    cluster.start("--multi-node", "--num-cpus", "1")
    cluster.join("--num-cpus", "1")
    with workers(cluster, 2) as node_ids:
        assert len(set(node_ids)) == 2  # one actor on each node
        interface = next(l.address for l in cluster.listeners() if kind(l.address) == "interface")
        check_against_docs(cluster, "multi", interface)
    cluster.stop()  # both nodes: no process alive, no port listening
