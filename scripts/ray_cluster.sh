#!/usr/bin/env bash
# A single-node Ray cluster with token authentication, for trying `ray job submit` and for the job
# submission test. Ray's cluster port listens on every interface even with the dashboard on
# 127.0.0.1, so the cluster always requires a token.
#
#   scripts/ray_cluster.sh start DIR    start a head whose state, logs and token live in DIR (free ports);
#                                       prints `export` lines (address, dashboard URL, token path)
#   scripts/ray_cluster.sh stop DIR     stop the processes of that head only (found by DIR in their
#                                       command line, signalled by PID; never `ray stop`, which ends
#                                       every Ray on the machine)
#
# Submit to it (the job runs with the Python the head was started from, here the project's .venv):
#   eval "$(scripts/ray_cluster.sh start /tmp/sharenas-ray)"
#   RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$SHARENAS_RAY_TOKEN_PATH .venv/bin/ray job submit \
#     --address "$SHARENAS_RAY_DASHBOARD" --working-dir . -- sharenas tune experiments/tiny/tune.yaml --address auto
set -euo pipefail
cd "$(dirname "$0")/.."
RAY=${RAY:-.venv/bin/ray}

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "${1:-}" in
    start)
        dir=$(realpath -m "${2:?usage: ray_cluster.sh start DIR}")
        mkdir -p "$dir"
        token="$dir/auth_token"
        [ -s "$token" ] || .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))' > "$token"
        chmod 600 "$token"
        port=$(free_port); dash=$(free_port); client=$(free_port); agent=$(free_port)  # the agent's default (52365) is one per machine
        export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token"
        "$RAY" start --head --node-ip-address=127.0.0.1 --port="$port" --dashboard-host=127.0.0.1 --dashboard-port="$dash" \
            --ray-client-server-port="$client" --dashboard-agent-listen-port="$agent" --include-dashboard=true --temp-dir="$dir/tmp" --disable-usage-stats >&2
        echo "$port" > "$dir/port"; echo "$dash" > "$dir/dashboard_port"
        echo "export SHARENAS_RAY_ADDRESS=127.0.0.1:$port"
        echo "export SHARENAS_RAY_DASHBOARD=http://127.0.0.1:$dash"
        echo "export SHARENAS_RAY_TOKEN_PATH=$token"
        ;;
    stop)
        dir=$(realpath -m "${2:?usage: ray_cluster.sh stop DIR}")
        pids=$(pgrep -f -- "$dir/tmp" || true)
        [ -z "$pids" ] && exit 0
        kill $pids 2>/dev/null || true
        for _ in $(seq 20); do
            alive=$(pgrep -f -- "$dir/tmp" || true)
            [ -z "$alive" ] && exit 0
            sleep 0.5
        done
        kill -9 $alive 2>/dev/null || true
        ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
