"""Benches with `lengths`: one warmup-stable-decay run per entry with a cool-down branch per shorter
length, each branch step for step the run of that length; every metric scored at every scored point,
with its best-epoch value; tables at one length; the noise ceiling from any two seeds; the regime map."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file
from scipy.stats import f_oneway, kendalltau

from nas.bench.build import Entry, branch_run, entry_file, entry_run, prepare, run_entry
from nas.bench.config import load_bench_config
from nas.bench.regime import choosable, noise_range, regime_map, regime_markdown, separates, separation
from nas.bench.table import bench_table, best_of_curve, ceiling_seeds, read_entries, seed_agreement
from trainer.checkpoint import MODEL_FILE, list_checkpoints
from trainer.config import OptimConfig, TrainConfig
from trainer.loop import train
from trainer.optim import cooldown_start, scheduled_lr
from trainer.typed_config import ConfigError, load_config

RECIPE = {
    "model": {"policy": "msclip", "size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 160, "shapes_zeroshot_per_class": 2, "max_eval_images": 40},
    "optim": {"lr": 5e-4, "final_lr": 5e-5, "warmup_epochs": None, "warmup_steps": 2, "schedule": "wsd", "cooldown_fraction": 0.5},
    "train": {"epochs": 2, "batch_size": 16, "num_threads": 1, "progress": False, "device": "cpu"},
    "eval": {"every_epochs": None, "nmi_pairs": 0},
}
METRICS = {"val_loss": "val_loss", "zeroshot_shapes": "metrics.zeroshot/shapes/top1",
           "r1": "mean(metrics.retrieval/shapes/i2t_r1, metrics.retrieval/shapes/t2i_r1)"}


def lengths_bench(tmp_path: Path, seeds=(0, 1), **extra) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "name": "test-lengths", "recipe": "recipe.yaml", "policies": ["msclip", "share-all", "share-last-6", "msclip-es"],
        "random": {"count": 0}, "seeds": list(seeds), "heldout": {"pairs": 64, "batch_size": 32}, "bootstrap": 200,
        "lengths": [1, 2], "metrics": METRICS, "ranking": "r1", "paper_zeroshot": "zeroshot_shapes", **extra,
    }))
    return config


def test_wsd_schedule_by_hand():
    cfg = OptimConfig(lr=1.0, final_lr=0.0, warmup_steps=2, warmup_epochs=None, schedule="wsd", cooldown_fraction=0.25)
    assert cooldown_start(cfg, 16) == 12
    lrs = [scheduled_lr(cfg, s, 2, 16) for s in range(16)]
    # warm-up 1/2, 2/2; constant 1.0 to step 11; cool-down steps 12..15: 1 - sqrt(k / 4), k = 1..4
    assert lrs[:12] == pytest.approx([0.5] + [1.0] * 11)
    assert lrs[12:] == pytest.approx([1 - math.sqrt(k / 4) for k in (1, 2, 3, 4)])
    # a shorter run agrees with the longer one before its own cool-down
    assert [scheduled_lr(cfg, s, 2, 8) for s in range(6)] == lrs[:6]
    with pytest.raises(ConfigError, match="cooldown_fraction"):
        OptimConfig(schedule="wsd", cooldown_fraction=0.0)


def test_a_cool_down_branch_is_the_run_of_that_length_bit_for_bit(tmp_path):
    config = lengths_bench(tmp_path)
    out = tmp_path / "bench"
    prepare(load_bench_config(config), out)
    record = run_entry(str(config), [], str(out), "msclip", 0)
    # 112 training pairs / 16 = 7 steps per epoch; the 1-epoch run cools down over its last round(3.5) = 4 steps, so
    # its branch leaves the 2-epoch run at step 3
    assert record["lengths"]["1"]["branch_step"] == 3 and record["lengths"]["1"]["steps"] == 7
    assert record["lengths"]["2"]["steps"] == 14 and record["steps"] == 14
    # the same entry trained alone for 1 epoch
    alone = load_config(RECIPE, TrainConfig, ["train.epochs=1", f"model.policy={out / 'policies' / 'msclip.json'}"])
    train(alone, tmp_path / "alone")
    mine = load_file(str(list_checkpoints(branch_run(entry_run(out, Entry("msclip", 0)), 1))[-1] / MODEL_FILE))
    theirs = load_file(str(list_checkpoints(tmp_path / "alone")[-1] / MODEL_FILE))
    assert mine.keys() == theirs.keys() and all(mine[k].equal(theirs[k]) for k in mine)
    # every metric at every scored point, and the best-epoch values
    assert [p["epoch"] for p in record["curve"]] == [1.0, 2.0]
    assert all({"zeroshot/shapes/top1", "retrieval/shapes/i2t_r1"} <= set(p["metrics"]) for p in record["curve"])
    assert "heldout/shapes/loss" not in record["curve"][0]["metrics"]  # the bench's own held-out loss is val_loss
    one = record["lengths"]["1"]
    assert [p["epoch"] for p in one["curve"]] == [1.0]  # the branch's end, after its cool-down
    assert one["curve"][0]["val_loss"] != record["curve"][0]["val_loss"]  # the longer run at epoch 1 had not cooled down

    # only the final checkpoints remain
    assert len(list_checkpoints(entry_run(out, Entry("msclip", 0)))) == 1


def test_best_of_a_mean_column_is_the_best_point_of_the_mean():
    curve = [{"epoch": 1.0, "val_loss": 3.0, "metrics": {"a": 10.0, "b": 30.0}},
             {"epoch": 2.0, "val_loss": 2.0, "metrics": {"a": 40.0, "b": 10.0}},
             {"epoch": 3.0, "val_loss": 2.5, "metrics": {"a": 20.0, "b": 24.0}}]
    assert best_of_curve(curve, "r", "mean(metrics.a, metrics.b)") == {"value": 25.0, "epoch": 2.0}
    assert best_of_curve(curve, "val_loss", "val_loss") == {"value": 2.0, "epoch": 2.0}
    assert best_of_curve([{"epoch": 1.0, "val_loss": 3.0}], "r", "mean(metrics.a, metrics.b)") is None


def test_a_ceiling_pairs_any_two_seeds_every_policy_has():
    runs = pd.DataFrame([{"policy": p, "seed": s, "x": v} for p, vals in
                         {"a": {3: 1.0, 4: 2.0, 7: 0.0}, "b": {3: 2.0, 4: 3.0}, "c": {3: 3.0, 4: 1.0}, "d": {3: 4.0, 4: 4.0}}.items()
                         for s, v in vals.items()])
    assert ceiling_seeds(runs) == (3, 4)
    agreement = seed_agreement(runs, "x", bootstrap=200)
    # seed 3 ranks a<b<c<d, seed 4 ranks c<a<b<d: 4 of 6 pairs concordant -> tau (4 - 2) / 6
    assert agreement["seeds"] == [3, 4] and agreement["kendall"] == pytest.approx(1 / 3)
    # no seed common to all: the pair most policies share
    partial = runs[~((runs["policy"] == "d") & (runs["seed"] == 4))]
    assert ceiling_seeds(partial) == (3, 4)
    assert ceiling_seeds(runs[runs["seed"] == 3]) is None


def test_lengths_need_a_wsd_recipe_of_the_longest_length(tmp_path):
    config = lengths_bench(tmp_path, lengths=[1, 3])
    with pytest.raises(ConfigError, match="train.epochs: 3"):
        load_bench_config(config)
    with pytest.raises(ConfigError, match="ranking"):
        load_bench_config(lengths_bench(tmp_path / "r", ranking="nope"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from nas.bench.build import build_bench

    tmp = tmp_path_factory.mktemp("lengths")
    config = lengths_bench(tmp, seeds=(3, 4))
    assert build_bench(config, tmp / "bench", workers=1) == []
    return tmp / "bench"


def test_tables_at_each_length_and_a_ceiling_from_seeds_3_and_4(built):
    full, short = bench_table(built, bootstrap=200).to_json(), bench_table(built, bootstrap=200, length=1).to_json()
    assert full["noise_ceiling_by_metric"]["r1"]["seeds"] == [3, 4] and full["noise_ceiling"] == full["noise_ceiling_by_metric"]["r1"]
    assert {r["steps"] for p in short["policies"].values() for r in p["runs"]} == {7}
    record = json.loads(entry_file(built, Entry("share-all", 3)).read_text())
    two = record["lengths"]["1"]["metrics"]
    run = next(r for r in short["policies"]["share-all"]["runs"] if r["seed"] == 3)
    assert run["r1"] == pytest.approx((two["retrieval/shapes/i2t_r1"] + two["retrieval/shapes/t2i_r1"]) / 2)
    assert run["best"]["val_loss"]["value"] == min(p["val_loss"] for p in record["lengths"]["1"]["curve"])
    with pytest.raises(ValueError, match="no 3-epoch length"):
        bench_table(built, length=3)


def test_the_regime_map_over_the_transformer_only_policies(built):
    regime = regime_map({"cell": built}, bootstrap=200)
    rows = {r["epochs"]: r for r in regime["rows"]}
    assert sorted(rows) == [1, 2]
    four = rows[2]["final"]
    assert four["policies"] == 3 and set(four["controls_vs_reference"]) == {"msclip-es"}
    means = {}
    for name in ("msclip", "share-all", "share-last-6", "msclip-es"):
        values = []
        for seed in (3, 4):
            m = json.loads(entry_file(built, Entry(name, seed)).read_text())["metrics"]
            values.append((m["retrieval/shapes/i2t_r1"] + m["retrieval/shapes/t2i_r1"]) / 2)
        means[name] = values
    between = pd.Series([sum(means[n]) / 2 for n in ("msclip", "share-all", "share-last-6")]).std(ddof=1)
    assert four["between_std"] == pytest.approx(between)
    es = four["controls_vs_reference"]["msclip-es"]
    assert es["mean"] == pytest.approx(sum(a - b for a, b in zip(means["msclip-es"], means["msclip"])) / 2)
    assert four["kendall_seeds"] == [3, 4] and four["kendall"] is not None
    assert regime["chosen"]["cell"] == "cell" and regime["chosen"]["epochs"] in (1, 2)
    assert four["noise_range_in_pooled_std"] == pytest.approx(noise_range(3, 2, four["pooled_df"]))
    assert rows[2]["vs_longest"]["kendall"] == pytest.approx(1.0)  # the longest length against itself
    names = sorted(rows[1]["final"]["means"])
    tau = kendalltau([rows[1]["final"]["means"][n] for n in names], [four["means"][n] for n in names]).statistic
    assert rows[1]["vs_longest"]["kendall"] == pytest.approx(tau) and rows[1]["vs_longest"]["policies"] == 3
    assert 0.0 <= four["anova_p"] <= 1.0


def test_a_fractional_cell_is_compared_over_the_policies_every_cell_has(built, tmp_path):
    import shutil

    subset = tmp_path / "subset"
    shutil.copytree(built, subset)
    shutil.rmtree(subset / "entries" / "share-all")
    regime = regime_map({"full": built, "subset": subset}, bootstrap=50)
    assert regime["common_policies"] == ["msclip", "share-last-6"]
    rows = {(r["cell"], r["epochs"]): r for r in regime["rows"]}
    assert rows["full", 2]["final"]["policies"] == 3 and rows["subset", 2]["final"]["policies"] == 2
    for cell in ("full", "subset"):  # the same runs of the same two policies: the same statistics in both cells
        common = rows[cell, 2]["common"]
        assert common["policies"] == 2 and common["between_std"] > 0
        assert common["between_std"] == pytest.approx(rows["subset", 2]["final"]["between_std"])
        assert set(common["means"]) == {"msclip", "share-last-6"} and not common.get("controls_vs_reference")
    assert "over the transformer-only policies every cell has" in regime_markdown(regime, "cmd")
    # the trend cell is shown, never chosen: the bench built in the chosen cell ranks all the policies
    records = {"full": read_entries(built), "subset": read_entries(subset)}
    assert choosable(records) == {"full"} and regime["chosen"]["cell"] == "full"
    assert choosable({"a": records["full"], "b": records["full"]}) == {"a", "b"}
    assert "common" not in regime_map({"full": built}, bootstrap=50)["rows"][0]


def _spread(runs: np.ndarray) -> np.ndarray:
    """The range of the policy means in pooled seed stds, per draw of `runs` (draws x policies x seeds)."""
    return np.ptp(runs.mean(axis=2), axis=1) / np.sqrt(runs.var(axis=2, ddof=1).mean(axis=1))


def test_identical_policies_separate_at_the_noise_rate_and_a_shifted_one_almost_always():
    rng = np.random.default_rng(0)
    policies, seeds, draws = 13, 2, 20_000
    noise = noise_range(policies, seeds, policies * (seeds - 1))
    same = _spread(rng.normal(size=(draws, policies, seeds)))
    assert (same > 2.0).mean() > 0.5  # a fixed 2 pooled stds is crossed by noise alone most of the time here
    called = np.array([separates({"range_in_pooled_std": r, "noise_range_in_pooled_std": noise}) for r in same])
    assert called.mean() == pytest.approx(0.05, abs=0.006)
    shifted = rng.normal(size=(2_000, policies, seeds))
    shifted[:, -1] += 8.0
    assert np.mean([separates({"range_in_pooled_std": r, "noise_range_in_pooled_std": noise}) for r in _spread(shifted)]) > 0.95


def test_the_separation_of_a_cell_holds_the_noise_range_and_the_anova():
    rng = np.random.default_rng(1)
    runs = pd.DataFrame([{"policy": f"p{i}", "seed": seed, "control": False, "final": (8.0 if i == 12 else 0.0) + rng.normal()}
                         for i in range(13) for seed in range(3)])
    shifted = separation(runs, "final", "r10", "p0", bootstrap=10)
    assert shifted["noise_range_in_pooled_std"] == pytest.approx(noise_range(13, 3, 26))
    assert shifted["anova_p"] == pytest.approx(f_oneway(*[g["final"] for _, g in runs.groupby("policy")]).pvalue)
    assert shifted["anova_p"] < 1e-6 and separates(shifted)
