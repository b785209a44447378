"""Benches with `lengths`: one warmup-stable-decay run per entry with a cool-down branch per shorter
length, each branch step for step the run of that length; every metric scored at every scored point,
with its best-epoch value; tables at one length; the noise ceiling from any two seeds; the regime map."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from nas.bench.build import Entry, branch_run, entry_file, entry_run, prepare, run_entry
from nas.bench.config import load_bench_config
from nas.bench.regime import regime_map
from nas.bench.table import bench_table, best_of_curve, ceiling_seeds, seed_agreement
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
        "name": "test-lengths", "train": "recipe.yaml", "policies": ["msclip", "share-all", "share-last-6", "msclip-es"],
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


def test_bench_show_prints_a_length_with_its_best_epochs_and_paired_seeds(built, tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app

    markdown = tmp_path / "table.md"
    result = CliRunner().invoke(app, ["bench", "show", str(built), "--length", "1", "--markdown", str(markdown), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    text = markdown.read_text()
    assert "the ranking metric; seed 3 vs seed 4 over 4 policies" in text and "## Best scored epoch" in text
    assert f"--length 1 --json --markdown {markdown}" in text
    assert "3 vs 4" in result.output  # the ceilings' seeds column
