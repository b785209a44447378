"""`sharenas report`: one self-contained HTML file (plotly.js embedded, works offline) about a run, a
search, a study or a bench: Pareto front of score vs parameters with the `msclip` / `clip` /
`msclip-s` baselines marked, sharing heatmaps (layers x sublayers), gate-probability and temperature
trajectories, layer-wise NMI, optimization history, and a comparison table against `msclip`."""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search_spaces import ARCH_FILE, SUBLAYERS, ArchRecord
from trainer import atomic
from trainer.metrics import read_metrics
from trainer.typed_config import ConfigError

from nas.bench.record import BenchRecord
from nas.discrete.config import REFERENCE_BASELINE
from nas.pareto.front import pareto_mask, to_minimization

BASELINES = ("msclip", "clip", "msclip-s")


@dataclass
class Point:
    """One policy with a score (higher is better after `sign`) and its parameter count."""

    name: str
    params: int
    value: float
    policy: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    error: float | None = None
    """The error bar of `value` (the bench's pooled seed std)."""


@dataclass
class Report:
    title: str
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---- figures ------------------------------------------------------------------------------------


def pareto_front(points: list[Point], metric: str, lower_is_better: bool, on_front: list[bool] | None = None) -> go.Figure:
    """Score vs parameters on a log axis: the Pareto-optimal points solid and joined, dominated ones
    faded, the baselines marked as stars. `on_front` (a multi-objective study's own front over all its
    objectives) replaces the front of score and parameters; a point's `error` is drawn as its error bar."""
    if on_front is None:
        values = to_minimization([[p.value, p.params] for p in points], ["minimize" if lower_is_better else "maximize", "minimize"])
        on_front = list(pareto_mask(values)) if points else []
    fig = go.Figure()

    def scatter(chosen: list[Point], name: str, **style: Any) -> go.Scatter:
        errors = [p.error for p in chosen]
        error_y = {"type": "data", "array": errors, "visible": True, "thickness": 1} if any(e is not None for e in errors) else None
        return go.Scatter(x=[p.params for p in chosen], y=[p.value for p in chosen], name=name, text=[p.name for p in chosen],
                          error_y=error_y, hovertemplate="%{text}<br>%{x:,} params<br>%{y:.4f}<extra></extra>", **style)

    front = sorted((p for p, keep in zip(points, on_front) if keep), key=lambda p: p.params)
    dominated = [p for p, keep in zip(points, on_front) if not keep and p.name not in BASELINES]
    fig.add_trace(scatter(dominated, "dominated", mode="markers", marker={"size": 7, "color": "#95a5a6"}, opacity=0.35))
    fig.add_trace(scatter([p for p in front if p.name not in BASELINES], "on the front", mode="markers",
                          marker={"size": 9, "color": "#2c3e50"}))
    fig.add_trace(go.Scatter(x=[p.params for p in front], y=[p.value for p in front], mode="lines", name="Pareto front",
                             line={"color": "#2c3e50", "dash": "dot", "shape": "hv"}, hoverinfo="skip"))
    for name, colour in zip(BASELINES, ("#e74c3c", "#3498db", "#27ae60")):
        mine = [(p, keep) for p, keep in zip(points, on_front) if p.name == name]
        if mine:
            fig.add_trace(scatter([p for p, _ in mine], name, mode="markers+text", textposition="top center",
                                  marker={"size": 14, "symbol": "star", "color": colour, "opacity": [1.0 if k else 0.45 for _, k in mine]}))
    fig.update_layout(title=f"{metric} vs parameters ({'lower' if lower_is_better else 'higher'} is better; faded: dominated)",
                      xaxis_title="parameters (log scale)", yaxis_title=metric, template="plotly_white", xaxis_type="log")
    return fig


def sharing_heatmap(policies: list[tuple[str, dict[str, Any]]]) -> go.Figure:
    """Layers x sublayers per policy: 1 = shared, 0 = modality-specific; the titles name the extras."""

    def title(name: str, policy: dict[str, Any]) -> str:
        pb = policy.get("parallel_branch")
        extras = (["ES"] if policy.get("early_specialization") else []) + ([f"PB {','.join(map(str, pb['fusion_layers']))}"] if pb else [])
        return f"{name}<br>{' + '.join(extras) or 'no extras'}"

    fig = make_subplots(rows=1, cols=len(policies), subplot_titles=[title(n, p) for n, p in policies], shared_yaxes=True,
                        horizontal_spacing=0.08)
    for col, (_, policy) in enumerate(policies, 1):
        z = [[1 if layer[s] == "shared" else 0 for s in SUBLAYERS] for layer in policy["layers"]]
        fig.add_trace(go.Heatmap(z=z, x=list(SUBLAYERS), y=[f"L{i}" for i in range(len(z))], zmin=0, zmax=1, showscale=col == 1,
                                 colorscale=[[0, "#fdebd0"], [0.5, "#fdebd0"], [0.5, "#1f618d"], [1, "#1f618d"]],
                                 colorbar={"tickvals": [0.25, 0.75], "ticktext": ["specific", "shared"]}),
                      row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Sharing per layer and sublayer (ES: early spec., PB: fusion layers)",
                      template="plotly_white", height=460, width=max(460, 240 * len(policies)), margin={"t": 110})
    return fig


def gate_trajectories(records: list[dict[str, Any]]) -> go.Figure:
    gates = sorted({k for r in records for k in r if k.startswith("gate/")})
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key in gates:
        xs = [r["step"] for r in records if key in r]
        fig.add_trace(go.Scatter(x=xs, y=[r[key] for r in records if key in r], mode="lines", name=key[5:], line={"width": 1}), secondary_y=False)
    temps = [r for r in records if "search/temperature" in r]
    if temps:
        fig.add_trace(go.Scatter(x=[r["step"] for r in temps], y=[r["search/temperature"] for r in temps], mode="lines", name="temperature",
                                 line={"color": "black", "width": 3, "dash": "dash"}), secondary_y=True)
    fig.update_layout(title="Gate probabilities (p specific / p on) and the Gumbel temperature", xaxis_title="step", template="plotly_white")
    fig.update_yaxes(title_text="probability", range=[0, 1], secondary_y=False)
    fig.update_yaxes(title_text="temperature", secondary_y=True)
    return fig


def nmi_curves(curves: dict[str, list[float]], paper: dict[str, list[float]] | None = None) -> go.Figure:
    fig = go.Figure()
    for name, values in curves.items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines+markers", name=name))
    for name, values in (paper or {}).items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines", name=f"paper {name} (B/32)", line={"dash": "dot"}))
    fig.update_layout(title="Layer-wise modality NMI (lower = image and text tokens more mixed)", xaxis_title="layer", yaxis_title="NMI",
                      template="plotly_white")
    return fig


def history(values: list[tuple[int, float]], metric: str, lower_is_better: bool) -> go.Figure:
    best, running = [], None
    for _, v in values:
        running = v if running is None else (min(running, v) if lower_is_better else max(running, v))
        best.append(running)
    fig = go.Figure([
        go.Scatter(x=[n for n, _ in values], y=[v for _, v in values], mode="markers", name="trial"),
        go.Scatter(x=[n for n, _ in values], y=best, mode="lines", name="best so far"),
    ])
    fig.update_layout(title="Optimization history", xaxis_title="trial", yaxis_title=metric, template="plotly_white")
    return fig


def training_curves(records: list[dict[str, Any]]) -> go.Figure:
    rows = [r for r in records if "train/loss" in r]
    fig = go.Figure(go.Scatter(x=[r["step"] for r in rows], y=[r["train/loss"] for r in rows], mode="lines", name="train loss"))
    fig.update_layout(title="Training loss", xaxis_title="step", yaxis_title="contrastive loss", template="plotly_white")
    return fig


def comparison_table(points: list[Point], metric: str, lower_is_better: bool) -> pd.DataFrame:
    """Every policy against `msclip`: score, delta, parameters and their delta, best first."""
    ref = next((p for p in points if p.name == REFERENCE_BASELINE), None)
    frame = pd.DataFrame([{"policy": p.name, metric: p.value, "params": p.params, **p.extra} for p in points])
    if ref is not None:
        frame[f"Δ {metric} vs {REFERENCE_BASELINE}"] = frame[metric] - ref.value
        frame["Δ params vs msclip"] = frame["params"] - ref.params
    return frame.sort_values(metric, ascending=lower_is_better).reset_index(drop=True)


# ---- sources ------------------------------------------------------------------------------------


def _nmi(metrics: dict[str, Any]) -> list[float]:
    return [metrics[k] for k in sorted(k for k in metrics if k.startswith("nmi/layer_"))]


def _paper_nmi() -> dict[str, list[float]]:
    from nas.bench.table import load_paper_results

    return (load_paper_results() or {}).get("table5_layer_nmi", {})


def bench_report(table: BenchRecord) -> Report:
    pooled = (table.pooled_std or {}).get("val_loss", {}).get("std")
    points = [Point(n, p.params, p.mean["val_loss"], p.policy, {"seeds": len(p.runs), "std": p.std["val_loss"]}, pooled)
              for n, p in table.policies.items()]
    report = Report("ShareBench")
    report.figures.append(("Pareto front", pareto_front(points, "held-out loss", True)))
    if pooled is not None:
        report.notes.append(f"Error bars: the pooled seed std of the held-out loss, {pooled:.4f}.")
    best = sorted(points, key=lambda p: p.value)[:3]
    chosen = best + [p for p in points if p.name in (REFERENCE_BASELINE, "msclip-s") and p not in best]
    report.figures.append(("Sharing of the best policies and the baselines", sharing_heatmap([(p.name, p.policy) for p in chosen])))
    report.tables.append(("Against msclip (mean over seeds)", comparison_table(points, "held-out loss", True)))
    nc = table.noise_ceiling
    if nc:
        report.notes.append(f"Noise ceiling: seed-to-seed Kendall tau {nc['kendall']:.3f} [{nc['kendall_ci'][0]:.3f}, {nc['kendall_ci'][1]:.3f}] over {int(nc['n'])} policies.")
    return report


def run_report(run_dir: Path) -> Report:
    records = read_metrics(run_dir)
    if (run_dir / "supernet.safetensors").is_file() or (run_dir / "gates.json").is_file():
        arch = ArchRecord.load(run_dir / ARCH_FILE) if (run_dir / ARCH_FILE).is_file() else None
        report = Report(f"Gumbel search {run_dir.name}")
        report.figures.append(("Gates", gate_trajectories(records)))
        if arch is not None:
            report.figures.append(("Derived policy", sharing_heatmap([(arch.policy.name, arch.policy.to_dict())])))
            cands = arch.provenance.get("candidates", [])
            if cands:
                report.tables.append(("Candidates scored with inherited weights", pd.DataFrame(cands).drop(columns=["policy"], errors="ignore")))
        return report
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); give a training run, a search run or a bench table")
    report = Report(f"Training run {run_dir.name}")
    report.figures.append(("Training", training_curves(records)))
    evals = [r for r in records if any(k.startswith(("zeroshot/", "retrieval/")) for k in r)]
    if evals:
        last = evals[-1]
        if _nmi(last):
            report.figures.append(("NMI", nmi_curves({run_dir.name: _nmi(last)}, _paper_nmi())))
        report.tables.append(("Final evaluation", pd.DataFrame([{"metric": k, "value": v} for k, v in last.items() if k not in ("step", "epoch")])))
    return report


def study_report(storage: str, study_name: str) -> tuple[Report, Any]:
    import optuna

    from nas.discrete.storage import open_storage

    handle = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=handle.storage)
    except KeyError:
        raise ConfigError(f"study {study_name!r} not found in {handle.display_url}") from None
    # The first objective is the metric; a multi-objective study's costs follow it.
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise ConfigError(f"study {study_name!r} has no completed trial yet; nothing to report")
    lower = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    metric = (study.metric_names or ["objective"])[0]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    points = []
    for t in done:
        name = t.user_attrs.get("baseline") or t.user_attrs.get("policy_name", f"trial {t.number}")
        points.append(Point(name, int(t.user_attrs.get("params_total", 0)), float(t.values[0]), t.user_attrs.get("policy", {}), {"trial": t.number}))
    report = Report(f"Optuna study {study_name}")
    front = None
    if len(study.directions) > 1:
        from nas.pareto.study import pareto_results

        results = pareto_results(study)
        members = {p.trial for p in results.pareto}
        front = [p.extra["trial"] in members for p in points]
        names = ", ".join(o.name for o in results.objectives)
        if results.hypervolume is not None:
            report.notes.append(f"Front over {names}: hypervolume {results.hypervolume:.6g} against the fixed reference point "
                                f"{results.reference_point}.")
        for name, b in results.baselines.items():
            if b.trial is not None:
                report.notes.append(f"{name} (trial {b.trial}): " + (f"dominated by trial {b.by}" if b.dominated else "on the front"))
    report.figures.append(("Pareto front", pareto_front(points, metric, lower, front)))
    ranked = sorted(points, key=lambda p: p.value, reverse=not lower)[:3]
    report.figures.append(("Best policies", sharing_heatmap([(f"{p.name} (#{p.extra['trial']})", p.policy) for p in ranked if p.policy])))
    report.figures.append(("History", history([(t.number, float(t.values[0])) for t in done], metric, lower)))
    nmi = {p.name: _nmi(trials[p.extra["trial"]].user_attrs.get("metrics", {})) for p in points}
    nmi = {k: v for k, v in nmi.items() if v}
    if nmi:
        report.figures.append(("NMI", nmi_curves(nmi, _paper_nmi())))
    report.tables.append((f"Against {REFERENCE_BASELINE}", comparison_table(points, metric, lower)))
    return report, study


def ray_report(path: Path) -> Report:
    """A `sharenas tune` experiment from Ray's own record (`ExperimentAnalysis`): every trial's last result."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(path.resolve()))
    rows = [t for t in analysis.trials if t.last_result and "run_dir" in t.last_result]
    if not rows:
        raise ConfigError(f"{path} holds no trial result of `sharenas tune` yet; nothing to report")
    lower = (analysis.default_mode or "min") == "min"
    full = max(t.last_result.get("training_iteration", 0) for t in rows)
    points = []
    for t in rows:
        policy_file = Path(t.last_result["run_dir"]) / "policy.json"
        policy = json.loads(policy_file.read_text()) if policy_file.is_file() else {}
        done = t.last_result.get("training_iteration", 0)
        points.append(Point(policy.get("name", t.trial_id), int(t.last_result.get("params_total", 0)), float(t.last_result["objective"]), policy,
                            {"optuna trial": t.config.get("optuna_trial"), "evaluations": f"{done}/{full}", "ran to the end": done == full}))
    finished = [p for p in points if p.extra["ran to the end"]]
    report = Report(f"Ray Tune experiment {path.name}")
    report.figures.append(("Pareto front", pareto_front(finished or points, "objective (trials that ran to the end)", lower)))
    ranked = sorted(finished, key=lambda p: p.value, reverse=not lower)[:3]
    if ranked:
        report.figures.append(("Best policies", sharing_heatmap([(p.name, p.policy) for p in ranked if p.policy])))
    ordered = sorted(points, key=lambda p: p.extra["optuna trial"] if p.extra["optuna trial"] is not None else 0)
    report.figures.append(("History", history([(int(p.extra["optuna trial"] or 0), p.value) for p in ordered], "objective", lower)))
    report.tables.append((f"Against {REFERENCE_BASELINE} (trials stopped early by the scheduler included, marked)", comparison_table(points, "objective", lower)))
    return report


def _formatters(frame: pd.DataFrame) -> dict[str, Any]:
    """As the markdown tables: integers with thousands separators, floats with 4 fixed decimals."""
    def integer(v: Any) -> str:
        return "" if pd.isna(v) else f"{int(v):,}"

    def real(v: Any) -> str:
        return "" if pd.isna(v) else f"{v:,.4f}"

    out: dict[str, Any] = {}
    for column in frame.columns:
        if pd.api.types.is_bool_dtype(frame[column]):
            continue
        if pd.api.types.is_integer_dtype(frame[column]):
            out[column] = integer
        elif pd.api.types.is_float_dtype(frame[column]):
            out[column] = real
    return out


def render(report: Report) -> str:
    """The report as one HTML page; plotly.js is embedded once (no network needed to view it)."""
    parts = []
    for i, (heading, fig) in enumerate(report.figures):
        parts.append(f"<h2>{html.escape(heading)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"figure-{i}"))
    for heading, frame in report.tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + frame.to_html(index=False, formatters=_formatters(frame), border=0, classes="table"))
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in report.notes)
    style = "body{font-family:sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse} td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title><style>{style}</style></head>"
            f"<body><h1>{html.escape(report.title)}</h1>{notes}{''.join(parts)}</body></html>")


def write_report(source: Path | None, out: Path, storage: str | None = None, study: str | None = None) -> Report:
    if storage is not None or study is not None:
        if storage is None or study is None:
            raise ConfigError("a study report needs both --storage URL and --study NAME")
        report, optuna_study = study_report(storage, study)
        from optuna_dashboard import save_plotly_graph_object

        for heading, fig in report.figures:  # a stable id per figure: reporting again replaces, not adds
            save_plotly_graph_object(optuna_study, fig, graph_object_id="sharenas-" + heading.lower().replace(" ", "-"))
    elif source is None:
        raise ConfigError("give SOURCE (a run directory or a bench table .json) or --storage URL --study NAME")
    elif source.suffix == ".json":
        try:
            table = BenchRecord.load(source)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; give a bench table (`sharenas bench show --json`)") from None
        report = bench_report(table)
    elif source.is_dir() and any(source.glob("experiment_state-*.json")):
        report = ray_report(source)
    elif source.is_dir():
        report = run_report(source)
    else:
        raise ConfigError(f"{source} does not exist; give a run directory, a bench table .json or --storage/--study")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, render(report))
    return report
