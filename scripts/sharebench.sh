#!/usr/bin/env bash
# Regenerate every committed ShareBench result (about 3 hours on 2 CPU cores; resumable: rerun after an
# interruption and finished entries are kept). Writes experiments/results/{sharebench-tiny,
# sharebench-tiny-short,rank-check-tiny}.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARENAS=${SHARENAS:-.venv/bin/sharenas}
RESULTS=experiments/results
WORKERS=${WORKERS:-2}

for bench in sharebench-tiny sharebench-tiny-short; do
  "$SHARENAS" bench build "experiments/bench/$bench.yaml" --out "runs/$bench" --workers "$WORKERS"
  "$SHARENAS" bench show "runs/$bench" --json --markdown "$RESULTS/$bench.md" > "$RESULTS/$bench.json.tmp"
  mv "$RESULTS/$bench.json.tmp" "$RESULTS/$bench.json"
done
"$SHARENAS" search rank-check experiments/tiny/rank_check.yaml --out runs/rank-check-tiny --json \
  --markdown "$RESULTS/rank-check-tiny.md" > "$RESULTS/rank-check-tiny.json.tmp"
mv "$RESULTS/rank-check-tiny.json.tmp" "$RESULTS/rank-check-tiny.json"
