"""Comparing benches: the length study across schedules (and its knee), and how well one bench ranks
another's policies (synthetic against real), on hand-made tables."""
from __future__ import annotations

import pytest

from nas.bench.record import BenchPolicy, BenchRecord, BenchRun
from nas.ranking.agreement import bench_agreement
from nas.ranking.lengths import length_comparison


def _table(losses: dict[str, float], paper_check: list[dict] | None = None) -> BenchRecord:
    return BenchRecord({n: BenchPolicy(0, {"name": n}, {"val_loss": v}) for n, v in losses.items()}, paper_check=paper_check or [])


def test_agreement_ranks_the_shared_policies_and_compares_each_ablation_direction():
    real = _table({"a": 1.0, "b": 1.2, "c": 1.1, "d": 1.5, "only-real": 0.5},
                  [{"table": "T3", "a": "a", "b": "b", "effect": "x", "paper_zeroshot_diff": 2.0, "tiny_val_loss_gain": 0.2, "tiny_val_loss_gain_se": 0.05},
                   {"table": "T4", "a": "share-last-K", "b": "K", "effect": "k", "paper_spearman": 0.7, "tiny_spearman": -0.5}])
    synthetic = _table({"a": 2.0, "b": 2.1, "c": 2.3, "d": 2.2},
                       [{"table": "T3", "a": "a", "b": "b", "effect": "x", "paper_zeroshot_diff": 2.0, "tiny_val_loss_gain": -0.1, "tiny_val_loss_gain_se": 0.02},
                        {"table": "T4", "a": "share-last-K", "b": "K", "effect": "k", "paper_spearman": 0.7, "tiny_spearman": -0.8}])
    result = bench_agreement(real, synthetic, "synthetic", bootstrap=200)
    assert result["policies"] == ["a", "b", "c", "d"]  # "only-real" is not in both
    # real order a < c < b < d, synthetic a < b < d < c: pairs (a,b) (a,c) (a,d) (b,d) concordant, (b,c) (c,d) discordant
    assert result["kendall"] == pytest.approx((4 - 2) / 6)
    first, trend = result["paper_directions"]
    assert (first["this"], first["other"], first["benches_agree"], first["this_agrees_with_paper"], first["other_agrees_with_paper"]) == (0.2, -0.1, False, True, False)
    assert (trend["benches_agree"], trend["this_agrees_with_paper"]) == (True, False)
    with pytest.raises(ValueError, match="shares 1 policies"):
        bench_agreement(real, _table({"a": 1.0, "z": 2.0}), "other")


def test_each_bench_is_ranked_by_its_own_ranking_metric():
    """A bench ranked by R@10 (higher is better) against one ranked by the held-out loss (lower is better)."""
    recall = BenchRecord({n: BenchPolicy(0, {"name": n}, {"val_loss": 5.0, "r10": v}) for n, v in {"a": 30.0, "b": 20.0, "c": 25.0}.items()},
                         ranking="r10")
    loss = _table({"a": 1.0, "b": 3.0, "c": 2.0})  # no ranking: by the loss; a best, then c, then b, as R@10 ranks them
    result = bench_agreement(recall, loss, "loss-bench", bootstrap=200)
    assert (result["metric"], result["other_metric"]) == ("r10", "val_loss") and result["kendall"] == pytest.approx(1.0)
    assert bench_agreement(recall, _table({"a": 3.0, "b": 1.0, "c": 2.0}), "reversed", bootstrap=200)["kendall"] == pytest.approx(-1.0)


def test_show_compares_with_several_benches_and_reads_an_old_single_comparison(tmp_path):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from nas.cli.app import app

    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    real, tiny = results / "sharebench-real-tiny.json", results / "sharebench-tiny.json"
    old = BenchRecord.load(real)  # written with one comparison (a dict)
    assert [a["against"] for a in old.agreement] == ["sharebench-tiny"]
    shown = CliRunner().invoke(app, ["bench", "show", str(real), "--json", "--bootstrap", "100", "--compare", str(tiny),
                                     "--compare", str(results / "sharebench-tiny-short.json"), "--markdown", str(tmp_path / "t.md")])
    assert shown.exit_code == 0, shown.output
    table = json.loads(shown.output[shown.output.index("{"):])
    assert [a["against"] for a in table["agreement"]] == ["sharebench-tiny", "sharebench-tiny-short"]
    assert table["agreement"][0]["kendall"] == pytest.approx(old.agreement[0]["kendall"], abs=1e-12)  # the loss, as before
    text = (tmp_path / "t.md").read_text()
    assert "## Does ShareBench-tiny predict this bench?" in text and "## Does ShareBench-tiny-short predict this bench?" in text


def _length_table(steps: int, tau: float, ci: list[float]) -> BenchRecord:
    run = BenchRun(0, {}, steps, steps * 2.0, curve=[{"epoch": steps / 10, "val_loss": 1.0}])
    return BenchRecord({"p": BenchPolicy(0, {}, runs=[run, run])}, noise_ceiling_by_metric={"val_loss": {"kendall": tau, "kendall_ci": ci, "spearman": tau}},
                       pooled_std={"val_loss": {"std": 0.1}})


def test_the_knee_is_the_shortest_length_within_one_standard_error_of_the_best():
    tables = [_length_table(80, 0.70, [0.50, 0.86]), _length_table(20, 0.30, [0.1, 0.5]), _length_table(40, 0.66, [0.5, 0.8])]
    study = length_comparison(tables)
    assert [r["steps"] for r in study["rows"]] == [20, 40, 80] and study["rows"][0]["train_hours"] == pytest.approx(80 / 3600)
    assert study["best_steps"] == 80 and study["best_kendall_se"] == pytest.approx(0.36 / 3.92)
    assert study["knee_steps"] == 40 and study["knee_epochs"] == 4  # 0.66 >= 0.70 - 0.092; 0.30 is not
    with pytest.raises(ValueError, match="two or more lengths"):
        length_comparison(tables[:1])


def test_a_table_s_config_is_read_once_with_its_record():
    from pathlib import Path

    from nas.bench.config import BenchConfig

    root = Path(__file__).resolve().parents[1]
    table = BenchRecord.load(root / "experiments" / "results" / "sharebench-tiny.json")  # v1: the config as YAML text
    cfg = table.bench_config()
    assert cfg.name == "sharebench-tiny" and cfg.space.size == "tiny" and table.config == cfg
    assert table.bench_config(["heldout.pairs=512"]).heldout.pairs == 512
    unrecorded = BenchRecord.from_json({"policies": {}, "noise_ceiling": None, "config": None})
    assert BenchRecord({}).bench_config() == unrecorded.bench_config() == BenchConfig()  # a table without a config: the defaults
