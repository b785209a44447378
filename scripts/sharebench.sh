#!/usr/bin/env bash
# Regenerate every committed ShareBench result (about 3.5 hours on 2 CPU cores; resumable: rerun after
# an interruption and finished entries are kept). Writes experiments/results/{sharebench-tiny,
# sharebench-tiny-short,rank-check-tiny}.{json,md}; the rank check runs once the full bench is there
# (supernet + trivial proxies) and again, reusing its supernet, once the short-trial table is.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARENAS=${SHARENAS:-.venv/bin/sharenas}
RESULTS=experiments/results
WORKERS=${WORKERS:-2}

bench() {
  "$SHARENAS" bench build "experiments/bench/$1.yaml" --out "runs/$1" --workers "$WORKERS"
  "$SHARENAS" bench show "runs/$1" --json --markdown "$RESULTS/$1.md" > "$RESULTS/$1.json.tmp"
  mv "$RESULTS/$1.json.tmp" "$RESULTS/$1.json"
}

rank_check() {
  "$SHARENAS" search rank-check experiments/tiny/rank_check.yaml --out runs/rank-check-tiny --json \
    --markdown "$RESULTS/rank-check-tiny.md" "$@" > "$RESULTS/rank-check-tiny.json.tmp"
  mv "$RESULTS/rank-check-tiny.json.tmp" "$RESULTS/rank-check-tiny.json"
}

bench sharebench-tiny
rank_check --set 'tables={}'
bench sharebench-tiny-short
rank_check
