#!/usr/bin/env bash
# Regenerate every committed ShareBench result (about 8 hours on 2 CPU cores; resumable: rerun after
# an interruption and finished entries, searches and scores are kept). Writes experiments/results/
# {sharebench-tiny,sharebench-tiny-short,rank-check-tiny,derived-tiny,supernet-learning}.{json,md}: the
# benches, the rank check of every supernet option (one search each), the searches' derived policies
# (copied to experiments/policies/) trained standalone with 3 seeds, and the supernet learning study.
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
bench sharebench-tiny-short
"$SHARENAS" search conflict experiments/tiny/conflict.yaml --out runs/rank-check-tiny/conflict
rank_check
cp runs/rank-check-tiny/supernet/policy.json experiments/policies/gumbel-derived-tiny.json
cp runs/rank-check-tiny/supernet-recipe-sandwich/policy.json experiments/policies/gumbel-sandwich-derived-tiny.json
cp runs/rank-check-tiny/conflict/policy.json experiments/policies/conflict-derived-tiny.json
bench derived-tiny
"${PYTHON:-.venv/bin/python}" scripts/supernet_learning.py --out "$RESULTS/supernet-learning.json"
