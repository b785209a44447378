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
#   scripts/sharebench.sh fronts about 2.5 hours (after tiny): experiments/results/sweep-tiny.json and
#                                {pareto-tiny,pareto-tiny-nsga2,pareto-tiny-random,front-policies-tiny,fronts-tiny}.{json,md}:
#                                the supernet budget sweep, the pareto-tiny study (MO TPE) and again with NSGA-II and
#                                with random sampling, the chosen policies the bench lacks trained standalone on its
#                                recipe, and every front judged against the bench's front
#   scripts/sharebench.sh fronts-real
#                                about 45 minutes (after real): the same on ShareBench-real-tiny (experiments/real/
#                                {gumbel-sweep,pareto}.yaml): sweep-real-tiny.json and {pareto-real-tiny,
#                                pareto-real-tiny-nsga2,pareto-real-tiny-random,front-policies-real-tiny,
#                                fronts-real-tiny,fronts-real-tiny-seed1}.{json,md}
#   scripts/sharebench.sh regime the regime map of ShareBench-real v2 (many CPU-hours; resumable, commit
#                                finished entries as they come): every cell in experiments/bench/regime/ (full-w64:
#                                12 transformer-only policies and msclip-es, the others 5 or 7 of them; seeds 0 and 1,
#                                one WSD run each with cool-down branches at the shorter lengths), then
#                                experiments/results/sharebench-real-v2-lengths.{json,md} over the cells built so far;
#                                finished entries are kept in experiments/results/regime/CELL/ with the cell's
#                                config (commit them: the map is computed from them, and a build on another
#                                machine starts from them)
#   scripts/sharebench.sh real-v2
#                                about 3 CPU-hours (after regime): experiments/results/sharebench-real-v2.{json,md}, the 33
#                                policies of v1 in the regime map's chosen cell at its chosen length (one 4-epoch WSD run
#                                per entry, a cool-down branch at 2), with every metric's ceiling, the paired
#                                differences, the paper check and the agreement with v1 and ShareBench-tiny; finished
#                                entries kept in experiments/results/sharebench-real-v2/ (commit them as they come)
#   scripts/sharebench.sh per-compute
#                                about 1.5 hours of one CPU thread (after tiny): the zero-cost proxies added to
#                                experiments/results/rank-check-tiny.{json,md} (the searched supernet proxies kept from
#                                the committed result, not searched again), then experiments/results/
#                                search-per-compute-tiny.{json,md}: every strategy's regret at 0.5-8 standalone runs of
#                                compute (a standalone run timed, the zero-cost proxies, the conflict search and the
#                                supernet searches run; the other trials looked up in the bench), then
#                                experiments/results/derived-per-compute-tiny.{json,md} (16 runs, about 1.1 hours):
#                                the sweep supernet's picks at 2 runs against msclip and msclip-s with seeds 2-5
#   scripts/sharebench.sh        tiny, real, fronts and fronts-real
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

# fronts TAG DIR BENCH SWEEP_RUN REFERENCE STUDY CUT [--seed-one] KIND...: the supernet budget sweep of
# DIR/gumbel-sweep.yaml; the study DIR/pareto.yaml with each sampler KIND (tpe: the config's own study
# STUDY; nsga2 with a population of 4, so that 8 trials make 2 generations; random); the chosen policies
# the bench lacks trained standalone on its recipe (front-policies-TAG); every front judged against the
# bench's front, and the studies of the kinds in CUT (comma-separated) also cut at the sweep's compute;
# --seed-one (before the kinds): also judged by the bench's seed-1 runs alone (fronts-TAG-seed1)
fronts() {
  local tag=$1 dir=$2 table="$RESULTS/$3.json" run=$4 reference=$5 study=$6 cut_kinds=",$7,"
  shift 7
  local seed_one=""
  [ "$1" = --seed-one ] && { seed_one=1; shift; }
  if [ ! -f "$run/sweep.json" ]; then
    "$SHARENAS" search gumbel "$dir/gumbel-sweep.yaml" --out "$run"
    "$SHARENAS" search sweep "$run" --budgets 8 --reference "$reference"
  fi
  cp "$run/sweep.json" "$RESULTS/sweep-$tag.json"
  local cut judges=(--judge sweep="$RESULTS/sweep-$tag.json") cuts=() kind name result options
  cut=$("${PYTHON:-.venv/bin/python}" -c 'import sys; from nas.supernet.sweep_record import SweepRecord; print(round(SweepRecord.load(sys.argv[1]).front()[1]))' "$RESULTS/sweep-$tag.json")
  for kind in "$@"; do
    if [ "$kind" = tpe ]; then
      name=$study result="$RESULTS/pareto-$tag" options=()
    else
      name="$study-$kind" result="$RESULTS/pareto-$tag-$kind" options=(--set study_name="$study-$kind" --set sampler.kind="$kind")
    fi
    [ "$kind" = nsga2 ] && options+=(--set sampler.population_size=4)
    [ -f "runs/optuna/$name/pareto.json" ] || "$SHARENAS" search optuna "$dir/pareto.yaml" "${options[@]}"
    cp "runs/optuna/$name/pareto.json" "$result.json"
    cp "runs/optuna/$name/pareto.md" "$result.md"
    judges+=(--judge "${kind/#tpe/mo-tpe}=$result.json")
    [[ $cut_kinds == *",$kind,"* ]] && cuts+=(--judge "${kind/#tpe/mo-tpe}-at-sweep-compute=$result.json@$cut")
  done
  # the chosen policies no table scores yet; a new one must be added to front-policies-TAG.yaml's list
  "$SHARENAS" bench front "$table" --out "runs/fronts-before-$tag.json" "${judges[@]}" "${cuts[@]}" \
    --write-missing "experiments/bench/front-policies-$tag"
  bench "front-policies-$tag"
  "$SHARENAS" bench front "$table" --out "$RESULTS/fronts-$tag.json" --scores "$RESULTS/front-policies-$tag.json" \
    "${judges[@]}" "${cuts[@]}"
  # a study whose trials are the bench's own seed-0 runs (the real set's) is judged by seed 1 alone as well
  [ -n "$seed_one" ] && "$SHARENAS" bench front "$table" --out "$RESULTS/fronts-$tag-seed1.json" \
    --scores "$RESULTS/front-policies-$tag.json" --seeds 1 "${judges[@]}" "${cuts[@]}"
  return 0
}

per_compute() {
  rank_check experiments/tiny/rank_check.yaml rank-check-tiny --set 'proxies=[params,specific_sublayers,grad_norm,snip]' \
    --set 'options={}' --set finetune=null --set keep=../results/rank-check-tiny.json
  # what was measured is committed as data (experiments/results/per-compute-tiny/measured.json); a run goes on from it
  mkdir -p runs/per-compute-tiny "$RESULTS/per-compute-tiny"
  [ -f "$RESULTS/per-compute-tiny/measured.json" ] && cp -n "$RESULTS/per-compute-tiny/measured.json" runs/per-compute-tiny/
  "$SHARENAS" search per-compute experiments/tiny/per_compute.yaml --out runs/per-compute-tiny > /dev/null
  cp runs/per-compute-tiny/measured.json "$RESULTS/per-compute-tiny/"
  "$SHARENAS" search per-compute experiments/tiny/per_compute.yaml --out "$RESULTS/per-compute-tiny" --analyse-only --json \
    --markdown "$RESULTS/search-per-compute-tiny.md" > "$RESULTS/search-per-compute-tiny.json.tmp"
  mv "$RESULTS/search-per-compute-tiny.json.tmp" "$RESULTS/search-per-compute-tiny.json"
  # the policies of the strategy closest to beating msclip at <= 4 runs, trained with seeds no strategy saw
  bench derived-per-compute-tiny
}

# kept_build NAME CONFIG: build the bench of CONFIG into runs/NAME, going on from the finished entries kept as
# data in $RESULTS/NAME/{config.yaml,entries/} (commit them: a new machine goes on from them), and keep there
# what it finished
kept_build() {
  local name=$1 config=$2 status=0
  copy_entries "$RESULTS/$name" "runs/$name" keep || return
  "$SHARENAS" bench build "$config" --out "runs/$name" --workers "$WORKERS" || status=$?
  if has_entries "runs/$name"; then
    mkdir -p "$RESULTS/$name" && cp "runs/$name/config.yaml" "$RESULTS/$name/" || return
    copy_entries "runs/$name" "$RESULTS/$name" replace || return
  fi
  return $status
}

# has_entries DIR: whether the bench directory DIR holds a finished entry
has_entries() {
  compgen -G "$1/entries/*/seed_*.json" > /dev/null
}

# copy_entries FROM TO keep|replace: the finished entry records of bench directory FROM into TO (keep: an
# entry TO already has stays as it is)
copy_entries() {
  local record target
  has_entries "$1" || return 0
  for record in "$1"/entries/*/seed_*.json; do
    target="$2/${record#"$1"/}"
    [ "$3" = keep ] && [ -e "$target" ] && continue
    mkdir -p "$(dirname "$target")" && cp "$record" "$target" || return
  done
}

# real_v2: ShareBench-real v2 in the map's chosen cell, at its chosen length, with its agreement with v1 and
# with ShareBench-tiny
real_v2() {
  local epochs
  # v2's config is the chosen cell's recipe at its own lengths: refuse before training if the map chose otherwise
  epochs=$("${PYTHON:-.venv/bin/python}" - "$RESULTS/sharebench-real-v2-lengths.json" experiments/bench/sharebench-real-v2.yaml <<'PY'
import json, sys
import yaml
chosen = json.load(open(sys.argv[1]))["chosen"]
lengths = yaml.safe_load(open(sys.argv[2]))["lengths"]
if chosen is None or chosen["cell"] != "full-w64" or chosen["epochs"] not in lengths:
    sys.exit(f"real-v2: the regime map chose {chosen}; {sys.argv[2]} is built for full-w64 at {lengths} epochs: "
             "give it that cell's recipe and lengths first")
print(chosen["epochs"])
PY
)
  [ -f data/real/manifest.json ] || scripts/realdata.sh build data/real
  kept_build sharebench-real-v2 experiments/bench/sharebench-real-v2.yaml
  "$SHARENAS" bench show "$RESULTS/sharebench-real-v2" --length "$epochs" --compare "$RESULTS/sharebench-real-tiny.json" \
    --compare "$RESULTS/sharebench-tiny.json" --json --markdown "$RESULTS/sharebench-real-v2.md" > "$RESULTS/sharebench-real-v2.json.tmp"
  mv "$RESULTS/sharebench-real-v2.json.tmp" "$RESULTS/sharebench-real-v2.json"
}

# The regime map's cells (experiments/bench/regime/CELL.yaml), in the order the map needs them: the full cell,
# then the data and width trends, the plateau, augmentation and more data.
REGIME_CELLS=(full-w64 half-w64 full-w128 long-w64 full-w64-keywords plus-w64)

# regime [CELL...]: build each cell (default: all, in REGIME_CELLS order), then the map of the cells built so far
regime() {
  [ -f data/real/manifest.json ] || scripts/realdata.sh build data/real
  [ -f data/real-plus/manifest.json ] || scripts/realdata.sh build data/real-plus --sources clipart,emoji,tuxpaint,wesnoth
  local cells=("$@") cell args=() status=0
  [ ${#cells[@]} -gt 0 ] || cells=("${REGIME_CELLS[@]}")
  for cell in "${cells[@]}"; do
    kept_build "regime/$cell" "experiments/bench/regime/$cell.yaml" || status=$?
  done
  for cell in "${REGIME_CELLS[@]}"; do
    if has_entries "$RESULTS/regime/$cell"; then args+=("$cell=$RESULTS/regime/$cell"); fi
  done
  "$SHARENAS" bench regime "${args[@]}" --out "$RESULTS/sharebench-real-v2-lengths.json"
  return $status
}

case "${1:-all}" in
  tiny) tiny ;;
  real) real ;;
  fronts) fronts tiny experiments/tiny sharebench-tiny runs/gumbel-sweep 4.852030263919619,8771586 tiny-pareto nsga2,random tpe nsga2 random ;;
  fronts-real)
    [ -f data/real/manifest.json ] || scripts/realdata.sh build data/real
    fronts real-tiny experiments/real sharebench-real-tiny runs/gumbel-sweep-real 4.808069911179485,8771586 real-pareto tpe,nsga2,random --seed-one tpe nsga2 random ;;
  regime) shift; regime "$@" ;;
  real-v2) real_v2 ;;
  per-compute) per_compute ;;
  all) tiny; real; "$0" fronts; "$0" fronts-real ;;
  *) sed -n '2,/^set -euo pipefail$/{/^set /!p}' "$0" >&2; exit 2 ;;
esac
