#!/usr/bin/env bash
# A Ray cluster on this machine with token authentication, for trying `ray job submit`, multi-node
# runs and for the tests (docs/clusters.md has the commands, the listening ports and their protection).
#
#   scripts/ray_cluster.sh start DIR [--multi-node] [--num-cpus N]
#                                   start a head whose state, logs and token live in DIR (free ports);
#                                   prints `export` lines (address, dashboard URL, token path). Without
#                                   --multi-node every port listens on 127.0.0.1 only and no node can join.
#   scripts/ray_cluster.sh join DIR [--num-cpus N]
#                                   a worker node on this machine joins the (--multi-node) head in DIR,
#                                   with its own free ports and the same token
#   scripts/ray_cluster.sh stop DIR stop every node of that cluster: exactly the processes its `ray start`s
#                                   started (recorded by session in DIR/nodes/), never `ray stop`, which
#                                   ends every Ray on the machine
#   scripts/ray_cluster.sh ports DIR
#                                   list the cluster's listening sockets, each with its node and role
#
# Submit to it (the job runs with the Python the nodes were started from, here the project's .venv):
#   eval "$(scripts/ray_cluster.sh start /tmp/sharenas-ray)"
#   RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$SHARENAS_RAY_TOKEN_PATH .venv/bin/ray job submit \
#     --address "$SHARENAS_RAY_DASHBOARD" --working-dir . -- sharenas tune experiments/tiny/tune.yaml --address auto
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    start|join|stop|ports) exec "${PYTHON:-.venv/bin/python}" -m nas.tune.cluster "$@" ;;
    *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
