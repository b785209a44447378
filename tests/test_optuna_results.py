"""The results table against the `msclip` baseline, on hand-made studies (no training)."""
from __future__ import annotations

import csv
import io

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from nas.discrete.results import collect_results, to_csv, to_markdown, write_results

METRIC = "zeroshot/digits/top1"


def _trial(value, params_total, name, baseline=None, state=TrialState.COMPLETE, **attrs):
    user_attrs = {"policy_name": name, "params_total": params_total, "params": {"shared": 1, "vision_specific": 2, "text_specific": 3, "total": params_total}, **attrs}
    if baseline:
        user_attrs["baseline"] = baseline
    return create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"layout": name}, distributions={"layout": CategoricalDistribution(["a", "b", "c", name])},
        user_attrs=user_attrs,
    )


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name="s")
    study.add_trial(_trial(30.0, 125_000_000, "msclip", "msclip"))
    study.add_trial(_trial(28.5, 150_000_000, "clip", "clip"))
    study.add_trial(_trial(33.0, 133_000_000, "msclip-s", "msclip-s"))
    study.add_trial(_trial(None, 140_000_000, "mask-x", state=TrialState.FAIL, fail_reason="diverged: the loss is nan at step 2"))
    study.add_trial(_trial(None, 140_000_000, "share-last-6", state=TrialState.PRUNED))
    return study


def test_deltas_sorting_and_sections() -> None:
    study = _study()
    table = collect_results(study, METRIC)
    assert [r.policy for r in table.rows] == ["msclip-s", "msclip", "clip"]  # best first
    by_name = {r.policy: r for r in table.rows}
    assert by_name["msclip-s"].delta_metric == 3.0 and by_name["msclip-s"].delta_params == 8_000_000
    assert abs(by_name["msclip-s"].delta_params_pct - 6.4) < 1e-9
    assert by_name["clip"].delta_metric == -1.5 and by_name["clip"].delta_params == 25_000_000
    assert by_name["msclip"].delta_metric == 0.0 and by_name["msclip-s"].best and not by_name["clip"].best

    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [r["policy"] for r in rows] == ["msclip-s", "msclip", "clip"]
    assert rows[0][METRIC] == "33.0" and rows[0]["delta_params"] == "8000000"

    md = to_markdown(table, study.get_trials())
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| 2 ")]
    assert cells and cells[0][:8] == ["2", "msclip-s", "msclip-s", "33.00", "+3.00", "133.000M", "+8.000M", "+6.4"]
    assert "1 pruned (trial 4)" in md
    assert "- trial 3 (mask-x): diverged: the loss is nan at step 2" in md


def test_without_the_reference_there_are_no_deltas() -> None:
    study = optuna.create_study(direction="maximize", study_name="s")
    study.add_trial(_trial(12.0, 4_000_000, "clip", "clip"))
    table = collect_results(study, METRIC)
    assert table.reference is None and table.rows[0].delta_metric is None and table.rows[0].delta_params is None
    assert "has not completed yet" in to_markdown(table)


def test_a_retried_trial_names_its_retry(tmp_path) -> None:
    study = _study()
    lost = _trial(None, 1, "share-last-3", state=TrialState.FAIL)
    study.add_trial(lost)
    retry = _trial(31.0, 160_000_000, "share-last-3")
    retry.system_attrs.update({"failed_trial": 5, "retry_history": [5]})
    study.add_trial(retry)
    table = write_results(study, METRIC, tmp_path, note=True)
    md = (tmp_path / "results.md").read_text()
    assert "- trial 5 (share-last-3): worker lost (no heartbeat); retried as trial 6" in md
    assert len(table.rows) == 4 and (tmp_path / "results.csv").read_text().count("\n") == 5
    from optuna_dashboard import get_note

    assert get_note(study) == md


def test_multi_objective_marks_the_pareto_front() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="m")
    for value, params, name, baseline in [(30.0, 125, "msclip", "msclip"), (28.0, 150, "clip", "clip"), (31.0, 130, "a", None), (29.0, 110, "b", None)]:
        t = _trial(0.0, params, name, baseline)
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[value, float(params)], params=t.params,
                                     distributions=t.distributions, user_attrs=t.user_attrs))
    best = {r.policy for r in collect_results(study, METRIC).rows if r.best}
    assert best == {"msclip", "a", "b"}
