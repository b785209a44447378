"""`sharenas report` draws fronts: a multi-objective study's (log parameter axis, dominated points
faded, baselines marked) and the bench's (pooled seed std as error bars, formatted table numbers),
both rendered by plotly.js in headless Chromium when it is installed (scripts/chromium.sh)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from nas.pareto.study import REFERENCE_ATTR
from nas.report import write_report
from search_spaces import count_params, get_preset

ROOT = Path(__file__).resolve().parents[1]
LOSS = "heldout/shapes/loss"


def chromium_render(page: Path) -> str:
    found = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), "path"], capture_output=True, text=True).stdout.strip()
    if not found:
        pytest.skip("chromium not installed (scripts/chromium.sh install); the figure checks above ran")
    run = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), "check", str(page)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    return run.stdout


def _mo_study(url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="mo", directions=["minimize", "minimize"])
    study.set_metric_names([LOSS, "params"])
    study.set_user_attr(REFERENCE_ATTR, {LOSS: 4.852, "params": 1e7})
    rows = [("msclip", 2.60, "msclip"), ("clip", 2.70, "clip"), ("msclip-s", 2.50, "msclip-s"), ("share-last-6", 2.55, None), ("share-all", 2.80, None)]
    for name, loss, baseline in rows:
        policy = get_preset(name, "tiny")
        params = count_params(policy, "tiny").total
        attrs = {"policy_name": name, "policy": policy.to_dict(), "params_total": params, **({"baseline": baseline} if baseline else {})}
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[loss, float(params)], params={"layout": name},
                                     distributions={"layout": CategoricalDistribution([r[0] for r in rows])}, user_attrs=attrs))


def test_a_multi_objective_study_report_draws_its_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _mo_study(url)
    report = write_report(None, tmp_path / "front.html", storage=url, study="mo")
    fig = report.figures[0][1]
    assert fig.layout.xaxis.type == "log"
    traces = {t.name: t for t in fig.data}
    # share-last-6 (2.55, 4.09M) is dominated by msclip-s (2.50, 3.84M), share-all (2.80, 3.79M) by clip (2.70, 3.33M)
    assert list(traces["dominated"].text) == ["share-last-6", "share-all"] and traces["dominated"].opacity == 0.35
    assert list(traces["on the front"].text) == []  # the front is the three baselines, drawn as stars
    assert set(traces) >= {"msclip", "clip", "msclip-s", "Pareto front"}
    assert any("clip (trial 1): " in n for n in report.notes) and any(n.startswith("Front over") for n in report.notes)
    rendered = chromium_render(tmp_path / "front.html")
    assert rendered.count('class="plot-container plotly"') == len(report.figures)


def test_the_bench_front_has_pooled_std_error_bars_and_formatted_numbers(tmp_path: Path) -> None:
    source = ROOT / "experiments" / "results" / "sharebench-tiny.json"
    pooled = json.loads(source.read_text())["pooled_std"]["val_loss"]["std"]
    report = write_report(source, tmp_path / "bench.html")
    fig = report.figures[0][1]
    bars = [t for t in fig.data if t.error_y is not None and t.error_y.array is not None]
    assert bars and all(all(e == pooled for e in t.error_y.array) for t in bars)
    html = (tmp_path / "bench.html").read_text()
    table = html[html.index("<table"):]
    cells = re.findall(r"<td>([^<]*)</td>", table)
    numbers = [c for c in cells if re.fullmatch(r"[-+]?[\d,]+(\.\d+)?", c)]
    assert numbers, cells[:20]
    for cell in numbers:  # integers grouped by thousands, floats with exactly 4 decimals
        assert re.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d{4})?", cell), cell
    assert any("," in c for c in numbers)
    rendered = chromium_render(tmp_path / "bench.html")
    assert rendered.count('class="plot-container plotly"') == len(report.figures)
