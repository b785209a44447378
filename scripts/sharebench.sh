#!/usr/bin/env bash
# Regenerate the committed ShareBench results (resumable: rerun after an interruption and finished
# entries, searches and scores are kept).
#   scripts/sharebench.sh tiny   about 8 hours on 2 CPU cores: experiments/results/{sharebench-tiny,
#                                sharebench-tiny-short,rank-check-tiny,derived-tiny,supernet-learning}.{json,md}:
#                                the benches, the rank check of every supernet option (one search each), the
#                                searches' derived policies (copied to experiments/policies/) trained standalone
#                                with 3 seeds, and the supernet learning study
#   scripts/sharebench.sh real   about 3 hours: builds data/real if missing, then experiments/results/
#                                {sharebench-real-tiny-1ep,sharebench-real-tiny,derived-real-tiny,rank-check-real-tiny,
#                                rank-check-real-tiny-loss}.{json,md}: the length study, the bench with its agreement
#                                with ShareBench-tiny, the real-set search's derived policy against msclip and
#                                msclip-s (4 seeds), and the rank check (ground truth R@10, and the loss)
#   scripts/sharebench.sh fronts about 1.5 hours (after tiny): experiments/results/sweep-tiny.json and
#                                {pareto-tiny-nsga2,pareto-tiny-random,front-policies-tiny,fronts-tiny}.{json,md}: the
#                                supernet budget sweep, the pareto-tiny study again with NSGA-II and with random
#                                sampling, the chosen policies the bench lacks trained standalone on its recipe, and
#                                every front judged against the bench's front
#   scripts/sharebench.sh        all three
set -euo pipefail
cd "$(dirname "$0")/.."
SHARENAS=${SHARENAS:-.venv/bin/sharenas}
RESULTS=experiments/results
WORKERS=${WORKERS:-2}

# bench NAME [BUILD OPTIONS] [-- SHOW OPTIONS]
bench() {
  local name=$1 build=() show=()
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do build+=("$1"); shift; done
  [ $# -gt 0 ] && shift && show=("$@")
  "$SHARENAS" bench build "experiments/bench/$name.yaml" --out "runs/$name" --workers "$WORKERS" "${build[@]}"
  "$SHARENAS" bench show "runs/$name" "${show[@]}" --json --markdown "$RESULTS/$name.md" > "$RESULTS/$name.json.tmp"
  mv "$RESULTS/$name.json.tmp" "$RESULTS/$name.json"
}

# rank_check CONFIG NAME [OPTIONS]
rank_check() {
  local config=$1 name=$2
  shift 2
  "$SHARENAS" search rank-check "$config" --out "runs/$name" --json --markdown "$RESULTS/$name.md" "$@" > "$RESULTS/$name.json.tmp"
  mv "$RESULTS/$name.json.tmp" "$RESULTS/$name.json"
}

tiny() {
  bench sharebench-tiny
  bench sharebench-tiny-short
  "$SHARENAS" search conflict experiments/tiny/conflict.yaml --out runs/rank-check-tiny/conflict
  rank_check experiments/tiny/rank_check.yaml rank-check-tiny
  cp runs/rank-check-tiny/supernet/policy.json experiments/policies/gumbel-derived-tiny.json
  cp runs/rank-check-tiny/supernet-recipe-sandwich/policy.json experiments/policies/gumbel-sandwich-derived-tiny.json
  cp runs/rank-check-tiny/conflict/policy.json experiments/policies/conflict-derived-tiny.json
  bench derived-tiny
  "${PYTHON:-.venv/bin/python}" scripts/supernet_learning.py --out "$RESULTS/supernet-learning.json"
}

real() {
  [ -f data/real/manifest.json ] || scripts/realdata.sh build data/real
  bench sharebench-real-tiny-1ep
  bench sharebench-real-tiny -- --lengths runs/sharebench-real-tiny-1ep --lengths runs/sharebench-real-tiny \
    --compare "$RESULTS/sharebench-tiny.json"
  [ -f runs/gumbel-real/policy.json ] || "$SHARENAS" search gumbel experiments/real/gumbel.yaml --out runs/gumbel-real
  cp runs/gumbel-real/policy.json experiments/policies/gumbel-derived-real-tiny.json
  bench derived-real-tiny --reuse runs/sharebench-real-tiny
  rank_check experiments/real/rank_check.yaml rank-check-real-tiny --set supernet_run=runs/gumbel-real
  rank_check experiments/real/rank_check.yaml rank-check-real-tiny-loss --set supernet_run=runs/gumbel-real --set truth=val_loss
}

fronts() {
  if [ ! -f runs/gumbel-sweep/sweep.json ]; then
    "$SHARENAS" search gumbel experiments/tiny/gumbel-sweep.yaml --out runs/gumbel-sweep
    "$SHARENAS" search sweep runs/gumbel-sweep --budgets 8 --reference 4.852030263919619,8771586
  fi
  cp runs/gumbel-sweep/sweep.json "$RESULTS/sweep-tiny.json"
  # the pareto-tiny study (MO TPE) again with NSGA-II (a population of 4, so that 8 trials make 2
  # generations) and with random sampling: the same trials and baselines
  local kind options
  for kind in nsga2 random; do
    options=(--set study_name="tiny-pareto-$kind" --set sampler.kind="$kind")
    [ "$kind" = nsga2 ] && options+=(--set sampler.population_size=4)
    [ -f "runs/optuna/tiny-pareto-$kind/pareto.json" ] || "$SHARENAS" search optuna experiments/tiny/pareto.yaml "${options[@]}"
    cp "runs/optuna/tiny-pareto-$kind/pareto.json" "$RESULTS/pareto-tiny-$kind.json"
    cp "runs/optuna/tiny-pareto-$kind/pareto.md" "$RESULTS/pareto-tiny-$kind.md"
  done
  local judges=(--judge sweep="$RESULTS/sweep-tiny.json" --judge mo-tpe="$RESULTS/pareto-tiny.json"
                --judge nsga2="$RESULTS/pareto-tiny-nsga2.json" --judge random="$RESULTS/pareto-tiny-random.json")
  # the chosen policies no table scores yet; a new one must be added to front-policies-tiny.yaml's list
  "$SHARENAS" bench front "$RESULTS/sharebench-tiny.json" --out runs/fronts-before.json "${judges[@]}" \
    --write-missing experiments/bench/front-policies-tiny
  bench front-policies-tiny
  # NSGA-II and random cut at the sweep's compute (they ran at the sweep's load; the MO-TPE study did not)
  local cut
  cut=$("${PYTHON:-.venv/bin/python}" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(round(d["search_seconds"] + d["sweep_seconds"]))' "$RESULTS/sweep-tiny.json")
  "$SHARENAS" bench front "$RESULTS/sharebench-tiny.json" --out "$RESULTS/fronts-tiny.json" --scores "$RESULTS/front-policies-tiny.json" \
    "${judges[@]}" --judge nsga2-at-sweep-compute="$RESULTS/pareto-tiny-nsga2.json@$cut" --judge random-at-sweep-compute="$RESULTS/pareto-tiny-random.json@$cut"
}

case "${1:-all}" in
  tiny) tiny ;;
  real) real ;;
  fronts) fronts ;;
  all) tiny; real; fronts ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
