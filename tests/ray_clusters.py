"""Ray clusters of scripts/ray_cluster.sh as the tests use them: started in a short directory (Ray's
unix sockets live under it, and a socket path may not exceed 107 bytes), recorded for the end-of-run
check (tests/conftest.py), and stopped with the script, after which none of their processes is alive
and none of their ports listens."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nas.tune.cluster import Listener, alive, cluster_processes, listeners, nodes
from tune_driver import ROOT, record_cluster

SCRIPT = ROOT / "scripts" / "ray_cluster.sh"


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def listening_ports() -> set[int]:
    """Every TCP port something on this machine listens on."""
    return {l.port for l in listeners({int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()})}


@dataclass
class Cluster:
    path: Path
    exports: dict[str, str] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)
    """pid -> start time of every process of the cluster seen so far."""

    @property
    def token(self) -> str:
        return (self.path / "auth_token").read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client that holds the token."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.path / "auth_token"),
                **{k: v for k, v in self.exports.items() if k.startswith("RAY_")}}

    def start(self, *options: str) -> None:
        done = _script("start", self.path, *options)
        record_cluster(self.path)
        if done.returncode != 0:
            pytest.skip(f"a Ray head could not start here: {done.stderr.strip().splitlines()[-1:]}")
        self.exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())

    def join(self, *options: str) -> None:
        done = _script("join", self.path, *options)
        record_cluster(self.path)
        assert done.returncode == 0, done.stderr[-3000:]

    def processes(self) -> dict[int, int]:
        found = cluster_processes(self.path)
        self.seen.update(found)
        return found

    def listeners(self) -> list[Listener]:
        return listeners(self.processes())

    def ports(self) -> set[int]:
        return {port for node in nodes(self.path) for port in node.ports.values()}

    def stop(self) -> None:
        """Stop it with the script; then nothing of it is alive and none of its ports listens."""
        self.processes()
        ports = self.ports() | {l.port for l in listeners(self.seen)}
        done = _script("stop", self.path)
        assert done.returncode == 0, done.stderr[-3000:]
        running = {pid for pid, start in self.seen.items() if alive(pid, start)}
        assert not running, f"processes of the cluster still alive after stop: {sorted(running)}"
        assert not nodes(self.path) and not cluster_processes(self.path)
        assert not ports & listening_ports(), f"ports of the cluster still listening after stop: {sorted(ports & listening_ports())}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """An empty cluster directory; whatever the test starts in it is stopped (and checked) afterwards."""
    path = Path(tempfile.mkdtemp(prefix="snray-", dir="/tmp"))
    made = Cluster(path)
    try:
        yield made
    finally:
        if nodes(path):
            made.stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ray_head(cluster: Cluster) -> Cluster:
    """A single-node head (every port on 127.0.0.1)."""
    cluster.start()
    return cluster
