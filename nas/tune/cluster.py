"""A token-authenticated Ray cluster on this machine: a head, worker nodes that join it, and a stop
that ends exactly the processes the cluster started (`scripts/ray_cluster.sh` is its command line).

Which processes: every node is started by `ray start` in a session of its own, recorded in
`DIR/nodes/NAME.json`. Everything Ray starts for that node (GCS, raylet, dashboard and its
subprocesses, the agents, the client server, the log monitor, the autoscaler, worker processes) stays
in that session; a job's entrypoint gets a session of its own from Ray's job supervisor but is a
descendant of it. So a node's processes are the members of its session and their descendants, read
from /proc, never matched by name. A session id is a process id that the kernel does not hand out
again while the session has a member, and a recorded session whose leader's start time changed has
been reused: `node_processes` returns nothing for it.

Where they listen: a single-node head gets node address 127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`,
the local-only mode Ray uses on macOS and Windows), and with a loopback node address every Ray server
binds 127.0.0.1. A worker node cannot join such a head: `ray start --address` resolves a loopback
address to the machine's interface address. A `--multi-node` head therefore uses the interface
address, as nodes on several machines must; its GCS, raylets, agents and workers then listen on the
interface (token-authenticated) and its three Prometheus endpoints on every interface (no
authentication): docs/clusters.md has the table, tests/test_ray_cluster.py checks it. Every port is
chosen here (free ports), so each listener has a known role.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HEAD = "head"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# role -> the `ray start` option that sets its port (None: an environment variable, below)
NODE_PORTS = {
    "node_manager": "--node-manager-port", "object_manager": "--object-manager-port",
    "dashboard_agent_http": "--dashboard-agent-listen-port", "dashboard_agent_grpc": "--dashboard-agent-grpc-port",
    "runtime_env_agent": "--runtime-env-agent-port", "metrics_export": "--metrics-export-port",
}
HEAD_PORTS = {"gcs": "--port", "dashboard": "--dashboard-port", "client_server": "--ray-client-server-port", **NODE_PORTS}
HEAD_PORT_ENV = {"autoscaler_metrics": "AUTOSCALER_METRIC_PORT", "dashboard_metrics": "DASHBOARD_METRIC_PORT"}
WORKER_ROLE = "worker"
"""A Ray worker process's own gRPC server (a task or actor, a job's driver): ports chosen by the OS."""


@dataclass
class Node:
    """A node as `start` / `join` recorded it: the session its `ray start` ran in (with that process's
    start time, to recognise the session) and the port of each role."""

    name: str
    session: int
    leader_start: int
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Node":
        return cls(**json.loads(path.read_text()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, session id, start time in clock ticks, state) of a live process; None once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[3]), int(fields[19]), fields[0]


def start_time(pid: int) -> int | None:
    """When a live process started (clock ticks since boot): with its pid, what identifies it."""
    stat = _stat(pid)
    return stat[2] if stat is not None else None


def alive(pid: int, start: int) -> bool:
    """Whether the process `pid` that started at `start` still runs (a zombie has ended)."""
    stat = _stat(pid)
    return stat is not None and stat[2] == start and stat[3] != "Z"


def _live() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, session, start time) of every process that has not ended (zombies have)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[3] != "Z":
            table[int(entry.name)] = stat[:3]
    return table


def session_processes(session: int, leader_start: int) -> dict[int, int]:
    """pid -> start time of the live members of a session and of their descendants (whatever their own
    session), or nothing when the session id now belongs to another session."""
    leader = _stat(session)
    if leader is not None and leader[2] != leader_start:
        return {}
    table = _live()
    found = {pid for pid, (_, sid, start) in table.items() if sid == session and start >= leader_start}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid: table[pid][2] for pid in found}


def nodes(cluster: Path) -> list[Node]:
    """The cluster's nodes, the head last."""
    found = [Node.load(p) for p in sorted((cluster / "nodes").glob("*.json"))]
    return sorted(found, key=lambda n: n.name == HEAD)


def node_processes(node: Node) -> dict[int, int]:
    return session_processes(node.session, node.leader_start)


def cluster_processes(cluster: Path) -> dict[int, int]:
    """pid -> start time of every live process of the cluster in DIR."""
    return {pid: start for node in nodes(cluster) for pid, start in node_processes(node).items()}


def stop_processes(find: Callable[[], dict[int, int]], grace: float = 10.0, patience: float = 60.0) -> None:
    """SIGTERM what `find()` returns (pid -> start time), SIGKILL what is left after `grace` seconds (at
    once with grace 0), and return once all of them have ended. A process seen once is followed by pid
    and start time, so one that leaves the tree (its parent ended) is still stopped, and a reused pid is
    never signalled."""
    seen: dict[int, int] = {}

    def remaining() -> dict[int, int]:
        seen.update(find())
        return {pid: start for pid, start in seen.items() if alive(pid, start)}

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, patience))[0 if grace > 0 else 1:]:
        deadline = time.monotonic() + wait
        for pid in remaining():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not remaining():
            return
    raise RuntimeError(f"processes still alive after SIGKILL: {sorted(remaining())}")


def stop_node(cluster: Path, name: str, grace: float = 10.0) -> None:
    node = Node.load(cluster / "nodes" / f"{name}.json")
    stop_processes(lambda: node_processes(node), grace)
    (cluster / "nodes" / f"{name}.json").unlink()


def stop(cluster: Path, grace: float = 10.0) -> None:
    """Stop every node of the cluster, the workers first."""
    for node in nodes(cluster):
        stop_node(cluster, node.name, grace)


@dataclass(frozen=True)
class Listener:
    pid: int
    address: str
    port: int


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # /proc/net/tcp*: 32-bit words in host order
    address = ipaddress.ip_address(raw)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def listeners(pids: set[int] | dict[int, int]) -> list[Listener]:
    """The listening TCP sockets of these processes, from the kernel's socket tables (what `ss -ltnp` shows)."""
    sockets: dict[str, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                host, port = fields[1].split(":")
                sockets[fields[9]] = (_address(host), int(port, 16))
    found = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # ended meanwhile
            continue
        for link in links:
            if link.startswith("socket:[") and (inode := link[8:-1]) in sockets:
                found.add(Listener(pid, *sockets[inode]))
    return sorted(found, key=lambda l: (l.port, l.address, l.pid))


def roles(cluster: Path) -> dict[int, tuple[str, str]]:
    """port -> (node, role) for every port the cluster's nodes were given."""
    return {port: (node.name, role) for node in nodes(cluster) for role, port in node.ports.items()}


def _launch(cluster: Path, name: str, args: list[str], env: dict[str, str], ports: dict[str, int]) -> Node:
    """`ray start ARGS` in a session of its own; the node is recorded before it is waited for, so a start
    that fails half-way is stopped like any other."""
    ray = Path(sys.executable).with_name("ray")
    token = cluster / "auth_token"
    env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", *LOOPBACK_ENV)},
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), **env}
    (cluster / "nodes").mkdir(parents=True, exist_ok=True)
    with open(cluster / f"{name}.log", "ab") as log:
        process = subprocess.Popen([str(ray), "start", *args, "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    node = Node(name, process.pid, start_time(process.pid) or 0, ports)
    (cluster / "nodes" / f"{name}.json").write_text(json.dumps(asdict(node)))
    if process.wait() != 0:
        tail = (cluster / f"{name}.log").read_text().strip().splitlines()[-5:]
        stop_node(cluster, name)
        raise RuntimeError(f"ray start for {name} failed ({cluster / f'{name}.log'}): " + " | ".join(tail))
    return node


def _node_args(cluster: Path, name: str, options: dict[str, str], num_cpus: int | None) -> tuple[list[str], dict[str, int]]:
    """`ray start` arguments that give each role (role -> option) a free port, and those ports."""
    ports = {role: free_port() for role in options}
    args = [f"{option}={ports[role]}" for role, option in options.items()]
    # Worker processes take ports from the OS (not Ray's fixed 10002-19999, which two nodes on one machine share).
    args += ["--min-worker-port=0", "--max-worker-port=0", f"--temp-dir={cluster / name}"]
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    return args, ports


def start_head(cluster: Path, multi_node: bool = False, num_cpus: int | None = None) -> dict[str, str]:
    """Start the head of a new cluster in DIR (its token, state and logs live there); returns the
    variables that reach it: address, dashboard URL, token path, and for a single-node head the setting
    a driver needs to connect to 127.0.0.1 (Ray would swap it for the interface address)."""
    cluster.mkdir(parents=True, exist_ok=True)
    if nodes(cluster):
        raise RuntimeError(f"{cluster} already holds a cluster: stop it first")
    token = cluster / "auth_token"
    if not token.is_file() or not token.read_text().strip():
        token.write_text(secrets.token_hex(32) + "\n")
    token.chmod(0o600)
    args, ports = _node_args(cluster, HEAD, HEAD_PORTS, num_cpus)
    env = {variable: str(ports.setdefault(role, free_port())) for role, variable in HEAD_PORT_ENV.items()}
    if not multi_node:
        env.update(LOOPBACK_ENV)
    args += ["--head", "--dashboard-host=127.0.0.1", "--include-dashboard=true"]
    _launch(cluster, HEAD, args, env, ports)
    return {"SHARENAS_RAY_ADDRESS": f"127.0.0.1:{ports['gcs']}", "SHARENAS_RAY_DASHBOARD": f"http://127.0.0.1:{ports['dashboard']}",
            "SHARENAS_RAY_TOKEN_PATH": str(token), **({} if multi_node else LOOPBACK_ENV)}


def join(cluster: Path, num_cpus: int | None = None) -> Node:
    """Start a worker node on this machine that joins the head in DIR, with its own ports and the same token."""
    head = Node.load(cluster / "nodes" / f"{HEAD}.json")
    if not node_processes(head):
        raise RuntimeError(f"no running head in {cluster}: start one with `start {cluster} --multi-node`")
    if _loopback_head(head):
        raise RuntimeError(f"the head in {cluster} is single-node (loopback only): start it with --multi-node for workers to join")
    taken = {int(p.stem.split("-")[1]) for p in (cluster / "nodes").glob("worker-*.json")}
    name = f"worker-{max(taken, default=0) + 1}"
    args, ports = _node_args(cluster, name, NODE_PORTS, num_cpus)
    return _launch(cluster, name, [f"--address=127.0.0.1:{head.ports['gcs']}", *args], {}, ports)


def _loopback_head(head: Node) -> bool:
    """Whether the head's GCS listens on loopback only (a single-node head)."""
    return any(l.port == head.ports["gcs"] and ipaddress.ip_address(l.address).is_loopback for l in listeners(node_processes(head)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ray_cluster.sh", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("start", help="start a head; prints `export` lines (address, dashboard URL, token path)")
    start_cmd.add_argument("--multi-node", action="store_true", help="listen on the interface address, so that worker nodes can join")
    join_cmd = commands.add_parser("join", help="start a worker node on this machine that joins the head in DIR")
    stop_cmd = commands.add_parser("stop", help="stop every node of the cluster in DIR, and only those processes")
    ports_cmd = commands.add_parser("ports", help="list the cluster's listening sockets with their roles")
    for command in (start_cmd, join_cmd, stop_cmd, ports_cmd):
        command.add_argument("dir", type=Path)
    for command in (start_cmd, join_cmd):
        command.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args(argv)
    cluster = args.dir.resolve()
    try:
        if args.command == "start":
            for key, value in start_head(cluster, args.multi_node, args.num_cpus).items():
                print(f"export {key}={value}")
        elif args.command == "join":
            print(f"joined: {join(cluster, args.num_cpus).name}", file=sys.stderr)
        elif args.command == "stop":
            stop(cluster)
        else:
            known = roles(cluster)
            for l in listeners(cluster_processes(cluster)):
                node, role = known.get(l.port, ("", WORKER_ROLE))
                print(f"{l.address}:{l.port}\t{node}\t{role}\tpid {l.pid}")
    except RuntimeError as exc:
        print(f"ray_cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
