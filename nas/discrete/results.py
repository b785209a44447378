"""The results of an Optuna search against the shared-all `msclip` baseline: CSV, markdown and a
dashboard note on the study.

Built as pandas DataFrames and written with `to_csv` / `to_markdown`. Only COMPLETE trials are rows of the table; the markdown adds the pruned and failed trials (with
their reasons) below it. Deltas are "trial minus msclip": accuracy in percentage points, parameters
in absolute numbers and percent.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from trainer import atomic

from nas.discrete.config import REFERENCE_BASELINE
from nas.pareto.study import pareto_results
from nas.pareto.study import to_markdown as pareto_markdown

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PARETO_JSON = "pareto.json"
PARETO_MD = "pareto.md"


@dataclass
class ResultRow:
    trial: int
    policy: str
    baseline: str | None
    metric: float
    delta_metric: float | None
    params_total: int
    delta_params: int | None
    delta_params_pct: float | None
    shared: int
    vision_specific: int
    text_specific: int
    early_specialization: bool
    parallel_branch: str
    within_budget: bool | None
    best: bool
    duplicate_of: int | None
    seconds: float | None
    run_dir: str | None
    params: str


@dataclass
class ResultsTable:
    study_name: str
    metric: str
    rows: list[ResultRow]
    reference: FrozenTrial | None
    pruned: list[FrozenTrial]
    failed: list[FrozenTrial]
    stopped: list[FrozenTrial]
    """COMPLETE in Optuna but stopped early by a Ray Tune scheduler: not ranked beside finished trials."""
    running: int
    waiting: int


def _reference(trials: list[FrozenTrial]) -> FrozenTrial | None:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("baseline") == REFERENCE_BASELINE]
    return done[0] if done else None


def _best_numbers(study: optuna.Study, complete: list[FrozenTrial]) -> set[int]:
    if not complete:
        return set()
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials} & {t.number for t in complete}
    feasible = [t for t in complete if all(c <= 0.0 for c in t.constraints.values())]
    if not feasible:  # no trial within the parameter budget
        return set()
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return {(max if maximize else min)(feasible, key=lambda t: t.values[0]).number}


def collect_results(study: optuna.Study, metric: str) -> ResultsTable:
    """Rows for every COMPLETE trial, best first (by the first objective), with deltas to `msclip`."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    ref = _reference(trials)
    ref_metric = ref.values[0] if ref is not None else None
    ref_params = ref.user_attrs.get("params_total") if ref is not None else None
    best = _best_numbers(study, complete)
    stopped = [t for t in complete if t.user_attrs.get("stopped_early")]
    complete = [t for t in complete if not t.user_attrs.get("stopped_early")]
    rows = []
    for t in complete:
        attrs = t.user_attrs
        policy = attrs.get("policy", {})
        counts = attrs.get("params", {})
        total = int(attrs.get("params_total", counts.get("total", 0)))
        branch = policy.get("parallel_branch")
        rows.append(
            ResultRow(
                trial=t.number,
                policy=attrs.get("policy_name", "?"),
                baseline=attrs.get("baseline"),
                metric=t.values[0],
                delta_metric=None if ref_metric is None else t.values[0] - ref_metric,
                params_total=total,
                delta_params=None if ref_params is None else total - ref_params,
                delta_params_pct=None if not ref_params else 100.0 * (total - ref_params) / ref_params,
                shared=int(counts.get("shared", 0)),
                vision_specific=int(counts.get("vision_specific", 0)),
                text_specific=int(counts.get("text_specific", 0)),
                early_specialization=bool(policy.get("early_specialization", False)),
                parallel_branch="-" if not branch else ",".join(map(str, branch["fusion_layers"])),
                within_budget=attrs.get("within_budget"),
                best=t.number in best,
                duplicate_of=attrs.get("duplicate_of"),
                seconds=attrs.get("seconds"),
                run_dir=attrs.get("run_dir"),
                params=json.dumps(t.params, sort_keys=True),
            )
        )
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    rows.sort(key=lambda r: (-r.metric if maximize else r.metric, r.trial))
    return ResultsTable(
        study_name=study.study_name,
        metric=metric,
        rows=rows,
        reference=ref,
        pruned=[t for t in trials if t.state == TrialState.PRUNED],
        stopped=stopped,
        failed=[t for t in trials if t.state == TrialState.FAIL],
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
    )


def to_frame(table: ResultsTable) -> pd.DataFrame:
    """The rows as a DataFrame (integer columns nullable, the metric column named after the metric)."""
    names = list(ResultRow.__dataclass_fields__)
    frame = pd.DataFrame([asdict(r) for r in table.rows], columns=names)
    for name in ("trial", "params_total", "delta_params", "shared", "vision_specific", "text_specific", "duplicate_of"):
        frame[name] = frame[name].astype("Int64")
    return frame.rename(columns={"metric": table.metric})


def to_csv(table: ResultsTable) -> str:
    return to_frame(table).to_csv(index=False, lineterminator="\n")


def _digits(value: float) -> int:
    """Decimals that show differences: 2 for accuracies in percent, 3 for losses."""
    return 2 if abs(value) >= 10 else 3


def _signed(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, "+" + fmt)


def _millions(n: int | None, signed: bool = False) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:{'+' if signed else ''}.3f}M"


def fail_reason(trial: FrozenTrial, trials: list[FrozenTrial]) -> str:
    """The recorded reason, or for a trial failed by the heartbeat, which trial retried it."""
    reason = trial.user_attrs.get("fail_reason")
    if reason:
        return reason
    retries = [t.number for t in trials if trial.number in t.system_attrs.get("retry_history", [])]
    if retries:
        return f"worker lost (no heartbeat); retried as trial {retries[0]}"
    return "interrupted or worker lost (not retried)"


def to_markdown(table: ResultsTable, trials: list[FrozenTrial] | None = None) -> str:
    """A markdown report: the table, then pruned and failed trials. `trials` (all trials of the
    study) lets failed trials name the trial that retried them."""
    lines = [f"## {table.study_name}: {len(table.rows)} completed trials vs `{REFERENCE_BASELINE}`", ""]
    if table.reference is None:
        lines += [f"The `{REFERENCE_BASELINE}` baseline has not completed yet: no deltas.", ""]
    else:
        ref = table.reference
        lines += [
            f"Reference: trial {ref.number} (`{REFERENCE_BASELINE}`), {table.metric} = {ref.values[0]:.{_digits(ref.values[0])}f}, "
            f"{_millions(ref.user_attrs.get('params_total'))} parameters. Δ = trial − {REFERENCE_BASELINE}.",
            "",
        ]
    display = pd.DataFrame([
        {
            "trial": r.trial,
            "policy": r.policy + (f" (= trial {r.duplicate_of})" if r.duplicate_of is not None else ""),
            "baseline": r.baseline or "",
            table.metric: f"{r.metric:.{_digits(r.metric)}f}",
            "Δ": _signed(r.delta_metric, f".{_digits(r.metric)}f"),
            "params": _millions(r.params_total),
            "Δ params": _millions(r.delta_params, True),
            "Δ %": _signed(r.delta_params_pct, ".1f"),
            "ES": "✓" if r.early_specialization else "",
            "PB fusion": r.parallel_branch,
            "budget": "" if r.within_budget is None else ("ok" if r.within_budget else "over"),
            "best": "★" if r.best else "",
        }
        for r in table.rows
    ], columns=["trial", "policy", "baseline", table.metric, "Δ", "params", "Δ params", "Δ %", "ES", "PB fusion", "budget", "best"])
    lines.append(display.to_markdown(index=False, disable_numparse=True))
    status = []
    if table.running or table.waiting:
        status.append(f"{table.running} running, {table.waiting} waiting")
    if table.stopped:
        numbers = ", ".join(f"{t.number} ({t.user_attrs.get('evaluations', '?')} evaluations)" for t in table.stopped)
        status.append(f"{len(table.stopped)} stopped early by the scheduler, not ranked (trials {numbers})")
    if table.pruned:
        numbers = ", ".join(str(t.number) for t in table.pruned)
        status.append(f"{len(table.pruned)} pruned ({'trials' if len(table.pruned) > 1 else 'trial'} {numbers})")
    if status:
        lines += ["", "Also: " + "; ".join(status) + "."]
    if table.failed:
        lines += ["", "### Failed trials", ""]
        for t in table.failed:
            name = t.user_attrs.get("policy_name", t.params.get("layout", "?"))
            lines.append(f"- trial {t.number} ({name}): {fail_reason(t, trials or table.failed)}")
    return "\n".join(lines) + "\n"


def write_results(study: optuna.Study, metric: str, out_dir: str | Path, note: bool = True) -> ResultsTable:
    """Write `results.csv` and `results.md` to `out_dir` and (with `note`) the markdown as the study's
    optuna-dashboard note; a multi-objective study also gets its front in `pareto.json` / `pareto.md`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = collect_results(study, metric)
    markdown = to_markdown(table, study.get_trials(deepcopy=False))
    atomic.write_text(out_dir / RESULTS_CSV, to_csv(table))
    atomic.write_text(out_dir / RESULTS_MD, markdown)
    if len(study.directions) > 1:
        front = pareto_results(study)
        atomic.write_json(out_dir / PARETO_JSON, front.to_json())
        atomic.write_text(out_dir / PARETO_MD, pareto_markdown(front))
        markdown = pareto_markdown(front) + "\n" + markdown
    if note:
        from optuna_dashboard import save_note

        save_note(study, markdown)
    return table

