"""ShareBench: resumable builds, the noise ceiling by hand, the pooled seed std and the paired
differences by hand, computed chance levels, the table's JSON shape and its recomputation from the runs
it records, reusing another bench's entries (the rank check against a bench: tests/test_rank_check.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nas.bench.build import Entry, build_bench, entry_file, prepare, run_entry
from nas.bench.config import load_bench_config
from nas.bench.policies import bench_policies, shared_sublayers
from nas.bench.record import BenchRecord
from nas.bench.table import bench_table, entry_policies, recompute_table, runs_frame, seed_agreement
from nas.cli import app

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
RECIPE = {
    "model": {"policy": "msclip", "size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 160, "shapes_zeroshot_per_class": 2, "max_eval_images": 40},
    "optim": {"lr": 5e-4, "final_lr": 5e-5, "warmup_epochs": None, "warmup_steps": 2},
    "train": {"epochs": 2, "batch_size": 16, "num_threads": 1, "progress": False, "device": "cpu"},
    "eval": {"every_epochs": None, "nmi_pairs": 0},
}


def tiny_bench(tmp_path: Path, **extra) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "name": "test-bench", "recipe": "recipe.yaml", "policies": ["msclip", "share-all"],
        "random": {"count": 1, "strata": 1, "seed": 0}, "seeds": [0, 1], "heldout": {"pairs": 64, "batch_size": 32},
        "bootstrap": 200, **extra,
    }))
    return config


def test_shipped_bench_config_spans_the_space():
    bench = load_bench_config(EXPERIMENTS / "bench" / "sharebench-tiny.yaml")
    policies = bench_policies(bench)
    assert len(policies) >= 30
    shared = sorted(shared_sublayers(p) for n, p in policies.items() if n.startswith("random-"))
    assert shared[0] <= 6 and shared[-1] >= 42  # the strata reach both ends of 0..48
    assert {"msclip", "clip-t768", "msclip-s"} <= set(bench.cfg.extra_seeds)


def test_build_skips_finished_entries_and_resumes_a_half_trained_one(tmp_path, monkeypatch):
    config = tiny_bench(tmp_path)
    out = tmp_path / "bench"
    entries = prepare(load_bench_config(config), out)
    assert [e.key for e in entries][:2] == ["msclip/seed_0", "msclip/seed_1"] and len(entries) == 6

    # An uninterrupted entry, for reference.
    prepare(load_bench_config(config), tmp_path / "reference")
    reference = run_entry(str(config), [], str(tmp_path / "reference"), "msclip", 0)
    assert [c["step"] for c in reference["curve"]] == [7, 14]  # 112 training pairs / 16 = 7 steps per epoch

    # Interrupt the same entry at step 10 (after the epoch-1 checkpoint), then resume it.
    import trainer.loop

    original = trainer.loop._Trainer._step

    def dying(self, micro, step):
        if step == 10:
            raise KeyboardInterrupt("simulated kill")
        return original(self, micro, step)

    monkeypatch.setattr(trainer.loop._Trainer, "_step", dying)
    with pytest.raises(KeyboardInterrupt):
        run_entry(str(config), [], str(out), "msclip", 0)
    assert not entry_file(out, Entry("msclip", 0)).exists()
    monkeypatch.setattr(trainer.loop._Trainer, "_step", original)
    resumed = run_entry(str(config), [], str(out), "msclip", 0)
    assert resumed["curve"] == reference["curve"]  # exact resume: the same held-out losses

    done = {e.key: entry_file(out, e).stat().st_mtime_ns for e in entries if entry_file(out, e).is_file()}
    assert list(done) == ["msclip/seed_0"]
    assert build_bench(config, out, workers=2) == []
    assert entry_file(out, Entry("msclip", 0)).stat().st_mtime_ns == done["msclip/seed_0"]  # skipped, not retrained
    assert all(entry_file(out, e).is_file() for e in entries)
    assert len(list((out / "runs" / "msclip" / "seed_0" / "checkpoints").glob("step_*"))) == 1  # intermediate ones pruned

    result = CliRunner().invoke(app, ["bench", "show", str(out), "--json", "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)
    assert set(table["policies"]) == {"msclip", "share-all", "random-01"}
    msclip = table["policies"]["msclip"]
    assert msclip["params"] == 3789057 and [r["seed"] for r in msclip["runs"]] == [0, 1]
    assert msclip["runs"][0]["val_loss"] == pytest.approx(reference["val_loss"])
    assert {"kendall", "kendall_ci", "spearman"} <= set(table["noise_ceiling"])
    assert [r["step"] for r in table["length_study"]] == [7, 14]
    # Chance levels recorded by the build: 64 held-out pairs in batches of 32; 24 shapes classes; no digits data.
    assert table["chance"]["val_loss"] == pytest.approx(np.log(32)) and table["chance"]["zeroshot_shapes"] == pytest.approx(100 / 24)
    assert table["chance"]["zeroshot_digits"] is None
    share_all = table["policies"]["share-all"]["vs_reference"]["val_loss"]
    pairs = [run["val_loss"] - m["val_loss"] for run, m in zip(table["policies"]["share-all"]["runs"], msclip["runs"])]
    assert share_all["n"] == 2 and share_all["mean"] == pytest.approx(np.mean(pairs)) and share_all["se"] == pytest.approx(abs(pairs[0] - pairs[1]) / 2)

    again = CliRunner().invoke(app, ["bench", "build", str(config), "--out", str(out)])
    assert again.exit_code == 0 and "6/6 entries done, 0 to train" in again.output, again.output
    other = tiny_bench(tmp_path, seeds=[0, 2])
    refused = CliRunner().invoke(app, ["bench", "build", str(other), "--out", str(out)])
    assert refused.exit_code == 2 and "another config" in refused.output


def test_an_entry_is_scored_in_fp32_whatever_precision_it_trained_in(tmp_path):
    """A bf16 recipe: the entry's held-out loss is the fp32 loss of its final weights, and the entry
    and the table say so; an entry from before the precision was recorded is taken as scored at its
    run's training precision (as the bench then did): a table of both says it is mixed, and another
    bench does not reuse it."""
    import torch

    from nas.bench.build import entry_run, reuse_entries
    from search_spaces import build_model, get_preset
    from trainer.checkpoint import latest_checkpoint, load_model_weights
    from trainer.data import fresh_shapes
    from trainer.evaluation.heldout import held_out_loss, materialize
    from trainer.loss import contrastive_loss

    config = tiny_bench(tmp_path, train={"precision": "bf16", "epochs": None, "steps": 2})
    out = tmp_path / "bench"
    prepare(load_bench_config(config), out)
    record = run_entry(str(config), [], str(out), "msclip", 0)
    assert record["score_precision"] == "fp32"
    model = build_model(get_preset("msclip", "tiny"), "tiny").eval()
    load_model_weights(model, latest_checkpoint(entry_run(out, Entry("msclip", 0))))
    batches = materialize(fresh_shapes(64, 123, 32, 32), 32)
    assert record["val_loss"] == held_out_loss(model, batches, "cpu")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = sum(float(contrastive_loss(*(t.float() for t in model(i, k)))) * len(i) for i, k in batches) / 64
    assert abs(record["val_loss"] - in_bf16) > 1e-6  # scoring in the training precision would have shown
    assert bench_table(out, bootstrap=200).score_precision == "fp32"

    legacy = entry_file(out, Entry("msclip", 0))
    older = {k: v for k, v in json.loads(legacy.read_text()).items() if k != "score_precision"}
    legacy.write_text(json.dumps(older))
    assert bench_table(out, bootstrap=200).score_precision == "bf16"
    other = entry_file(out, Entry("share-all", 0))
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({**record, "name": "share-all"}))
    assert bench_table(out, bootstrap=200).score_precision == "mixed (runs per precision): bf16 1, fp32 1"
    again = tmp_path / "again"
    prepare(load_bench_config(config), again)
    assert reuse_entries(load_bench_config(config), again, out, [Entry("msclip", 0)]) == []
    legacy.write_text(json.dumps(record))
    assert reuse_entries(load_bench_config(config), again, out, [Entry("msclip", 0)]) == [Entry("msclip", 0)]


def hand_made_records() -> list[dict]:
    """Five policies x two seeds with ties in seed 1, plus a third seed for one policy."""
    seed0 = {"a": 1.0, "b": 1.2, "c": 1.1, "d": 1.5, "e": 1.3}
    seed1 = {"a": 1.1, "b": 1.1, "c": 1.3, "d": 1.6, "e": 1.2}
    records = []
    for seed, losses in ((0, seed0), (1, seed1), (2, {"a": 0.9})):
        for name, loss in losses.items():
            records.append({
                "name": name, "seed": seed, "params": 100 + ord(name), "shared_sublayers": 0, "steps": 1, "val_loss": loss,
                "curve": [{"step": 1, "epoch": 1.0, "val_loss": loss}], "metrics": {"zeroshot/shapes/top1": 10 * loss},
                "train_seconds": 1.0, "policy": {},
            })
    return records


def write_entries(bench_dir: Path, records: list[dict]) -> None:
    for record in records:
        path = bench_dir / "entries" / record["name"] / f"seed_{record['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))


def test_noise_ceiling_on_a_hand_made_table_with_ties(tmp_path):
    records = hand_made_records()
    runs = runs_frame(entry_policies(records), ["val_loss"])
    ceiling = seed_agreement(runs, "val_loss", bootstrap=300)
    # negated losses (higher = better), seed 0 [-1.0, -1.2, -1.1, -1.5, -1.3] against seed 1
    # [-1.1, -1.1, -1.3, -1.6, -1.2]: 7 concordant and 2 discordant pairs, one tie in seed 1, so
    # tau-b = 5 / sqrt(10 * 9); rho = 6 / sqrt(95) (worked in tests/test_supernet_ranking.py)
    assert ceiling["n"] == 5
    assert ceiling["kendall"] == pytest.approx(5 / 90**0.5)
    assert ceiling["spearman"] == pytest.approx(6 / 95**0.5)
    assert ceiling["kendall_ci"][0] <= ceiling["kendall"] <= ceiling["kendall_ci"][1]
    write_entries(tmp_path, records)
    table = bench_table(tmp_path, bootstrap=300).to_json()
    a = table["policies"]["a"]
    assert a["mean"]["val_loss"] == pytest.approx(1.0) and a["std"]["val_loss"] == pytest.approx(np.std([1.0, 1.1, 0.9], ddof=1))
    assert list(table["policies"])[0] == "a"  # best (lowest) mean loss first
    assert table["noise_ceiling"]["kendall"] == pytest.approx(ceiling["kendall"])


SPREAD_LOSSES = {"msclip": {0: 1.0, 1: 1.2, 2: 1.4}, "x": {0: 0.9, 1: 1.0, 2: 1.3}, "y": {0: 1.3, 1: 1.4}, "z": {2: 1.5}}
"""`y` lacks msclip's seed 2; `z` has only seed 2."""
TRAINER_CHANCE = {"zeroshot/shapes/top1": 100 / 24, "retrieval/shapes/i2t_r1": 100 / 286}


def spread_bench(bench_dir: Path, chance: dict | None = TRAINER_CHANCE, **config) -> Path:
    """A bench directory of SPREAD_LOSSES, built with a held-out set of 100 pairs in batches of 32; its
    entries record the trainer's `chance` levels (none: entries of a build before they were recorded)."""
    records = [{
        "name": name, "seed": seed, "params": 100, "shared_sublayers": 0, "steps": 1, "val_loss": loss,
        "curve": [{"step": 1, "epoch": 1.0, "val_loss": loss}], "metrics": {"zeroshot/shapes/top1": 10 * loss},
        **({"chance": chance} if chance else {}), "train_seconds": 1.0, "policy": {},
    } for name, losses in SPREAD_LOSSES.items() for seed, loss in losses.items()]
    write_entries(bench_dir, records)
    (bench_dir / "config.yaml").write_text(yaml.safe_dump({"heldout": {"pairs": 100, "batch_size": 32}, **config}))
    return bench_dir


def test_pooled_seed_std_and_differences_paired_by_seed_by_hand(tmp_path):
    from nas.bench.render import bench_markdown
    from nas.cli.console import json_safe

    table = json_safe(bench_table(spread_bench(tmp_path), bootstrap=100).to_json())
    # Within-policy sums of squares: msclip 0.08 (mean 1.2), x 0.78/9 (mean 3.2/3), y 0.005 (mean 1.35), z 0; df 2+2+1+0.
    assert table["pooled_std"]["val_loss"] == {"std": pytest.approx(np.sqrt((0.08 + 0.78 / 9 + 0.005) / 5)), "df": 5, "policies": 3}
    assert table["pooled_std"]["val_loss"]["std"] == pytest.approx(0.185293, abs=1e-6)
    assert table["reference"] == "msclip" and "vs_reference" not in table["policies"]["msclip"]
    x = table["policies"]["x"]["vs_reference"]["val_loss"]  # differences -0.1, -0.2, -0.1
    assert x["n"] == 3 and x["seeds"] == [0, 1, 2] and x["mean"] == pytest.approx(-0.4 / 3)
    assert x["se"] == pytest.approx(np.sqrt(0.02 / 3 / 2 / 3)) and x["se"] == pytest.approx(1 / 30)
    assert x["ci95"] == pytest.approx([-0.4 / 3 - 4.302653 / 30, -0.4 / 3 + 4.302653 / 30], abs=1e-6)  # t(0.975, 2 df)
    y = table["policies"]["y"]["vs_reference"]["val_loss"]  # seeds 0 and 1 only: 0.3, 0.2 (unpaired means would give 0.15)
    assert y["n"] == 2 and y["seeds"] == [0, 1] and y["mean"] == pytest.approx(0.25) and y["se"] == pytest.approx(0.05)
    assert y["ci95"] == pytest.approx([0.25 - 12.706205 * 0.05, 0.25 + 12.706205 * 0.05], abs=1e-5)  # t(0.975, 1 df)
    z = table["policies"]["z"]["vs_reference"]["val_loss"]
    assert (z["n"], z["seeds"], z["mean"], z["se"], z["ci95"]) == (1, [2], pytest.approx(0.1), None, [None, None])
    assert table["policies"]["y"]["vs_reference"]["zeroshot_shapes"]["mean"] == pytest.approx(2.5)
    assert table["policies"]["x"]["std"]["val_loss"] == pytest.approx(np.sqrt(0.78 / 9 / 2))  # the existing keys stay
    text = bench_markdown(BenchRecord.from_json(table), "spread", "cmd")
    assert "held-out loss: 0.1853 nats (df 5," in text and "## Differences from `msclip`, paired by seed" in text
    assert "| y        | 2              | +0.250 ± 0.050" in text
    other = json_safe(bench_table(spread_bench(tmp_path / "other", reference="y"), bootstrap=100).to_json())
    assert other["reference"] == "y" and other["policies"]["msclip"]["vs_reference"]["val_loss"]["mean"] == pytest.approx(-0.25)


def test_chance_levels_are_computed_for_the_bench_and_kept_in_its_json(tmp_path):
    from nas.bench.render import policy_frame
    from nas.cli.console import json_safe

    table = json_safe(bench_table(spread_bench(tmp_path), bootstrap=100).to_json())
    # 100 pairs in batches of 32: three batches of 32 and one of 4, averaged per pair.
    assert table["chance"]["val_loss"] == pytest.approx((96 * 5 * np.log(2) + 4 * np.log(4)) / 100) == pytest.approx(3.382558, abs=1e-6)
    assert table["chance"]["zeroshot_shapes"] == pytest.approx(4.166667, abs=1e-6) and table["chance"]["zeroshot_digits"] is None
    assert table["chance"]["retrieval_shapes_i2t_r1"] == pytest.approx(0.349650, abs=1e-6)
    columns = list(policy_frame(BenchRecord.from_json(table)).columns)
    assert "held-out loss (nats; chance 3.38)" in columns and "zero-shot shapes (%; chance 4.17)" in columns
    assert "shapes i2t R@1 (%; chance 0.35)" in columns and "zero-shot digits (%)" in columns
    (tmp_path / "bench.json").write_text(json.dumps(table))
    result = CliRunner().invoke(app, ["bench", "show", str(tmp_path / "bench.json"), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert "held-out loss (nats; chance 3.38)" in result.output and "zero-shot shapes (%; chance 4.17)" in result.output
    assert "Differences from msclip paired by seed" in result.output


def test_chance_levels_of_a_bench_built_before_they_were_recorded_come_from_its_config(tmp_path):
    from trainer.typed_config import dump_config

    config = tiny_bench(tmp_path)
    bench = spread_bench(tmp_path / "bench", chance=None)
    dump_config(load_bench_config(config).cfg, bench / "config.yaml")
    plain = json.loads(CliRunner().invoke(app, ["bench", "show", str(bench), "--json", "--bootstrap", "100"]).output)
    assert plain["chance"]["val_loss"] == pytest.approx(np.log(32)) and plain["chance"]["zeroshot_shapes"] is None
    result = CliRunner().invoke(app, ["bench", "show", str(bench), "--config", str(config), "--json", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    chance = json.loads(result.output)["chance"]
    assert chance["val_loss"] == pytest.approx(np.log(32))  # 64 pairs in two batches of 32
    assert chance["zeroshot_shapes"] == pytest.approx(100 / 24) and chance["zeroshot_digits"] is None  # 24 classes; no digits
    other = tiny_bench(tmp_path / "other", heldout={"pairs": 64, "batch_size": 16})
    refused = CliRunner().invoke(app, ["bench", "show", str(bench), "--config", str(other)])
    assert refused.exit_code == 2 and "heldout.batch_size" in refused.output, refused.output


def test_bench_show_of_a_json_recomputes_it_from_its_runs(tmp_path):
    from nas.bench.table import load_paper_results
    from nas.cli.console import json_safe

    table = json_safe(bench_table(spread_bench(tmp_path), bootstrap=100, paper=load_paper_results()).to_json())
    legacy = json.loads(json.dumps(table))
    for key in ("reference", "chance", "pooled_std"):
        del legacy[key]
    for name, policy in legacy["policies"].items():
        policy.pop("vs_reference", None)
        policy["mean"]["val_loss"] = policy["std"]["val_loss"] = 0.0  # summaries are recomputed, not read
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    result = CliRunner().invoke(app, ["bench", "show", str(tmp_path / "legacy.json"), "--json", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.output)
    assert again["chance"]["val_loss"] == table["chance"]["val_loss"] and again["chance"]["zeroshot_shapes"] is None  # the data decide the rest
    assert {k: v for k, v in again.items() if k != "chance"} == {k: v for k, v in table.items() if k != "chance"}
    assert json_safe(recompute_table(BenchRecord.from_json(table), bootstrap=100, paper=load_paper_results()).to_json()) == table  # a recomputed JSON keeps its recorded chance levels
    (tmp_path / "runless.json").write_text(json.dumps({"policies": {"a": {"mean": {}}}}))
    refused = CliRunner().invoke(app, ["bench", "show", str(tmp_path / "runless.json")])
    assert refused.exit_code == 2 and "policies[*].runs" in refused.output, refused.output


def test_a_second_build_of_the_same_directory_is_refused(tmp_path):
    from trainer.rundir import RunDir
    from trainer.typed_config import ConfigError

    config = tiny_bench(tmp_path)
    out = tmp_path / "bench"
    with RunDir(out, "bench").lock():
        with pytest.raises(ConfigError, match=f"{out} is being written by pid"):
            build_bench(config, out)
    result = CliRunner().invoke(app, ["bench", "show", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "bench build" in result.output


def test_markdown_of_a_one_seed_table_with_the_paper_check(tmp_path):
    from nas.bench.render import bench_markdown
    from nas.cli.console import json_safe

    for record in hand_made_records():
        if record["seed"] == 0:
            record["name"] = {"a": "msclip", "b": "msclip-es", "c": "share-all"}.get(record["name"], record["name"])
            path = tmp_path / "entries" / record["name"] / "seed_0.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
    paper = json.loads((EXPERIMENTS / "paper_results.json").read_text())
    table = json_safe(bench_table(tmp_path, bootstrap=200, paper=paper).to_json())
    assert table["noise_ceiling"] is None and table["paper_check"]
    text = bench_markdown(BenchRecord.from_json(table), "one seed", "cmd")
    assert "One seed per policy: no noise ceiling." in text and "msclip-es vs msclip" in text


def test_reuse_copies_entries_trained_the_same_way_and_trains_the_rest(tmp_path):
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    small = tiny_bench(first_dir, policies=["msclip"], random={"count": 0, "strata": 1, "seed": 0}, seeds=[0])
    assert build_bench(small, first_dir / "out") == []
    trained = json.loads(entry_file(first_dir / "out", Entry("msclip", 0)).read_text())

    larger = tiny_bench(second_dir, policies=["msclip", "share-all"], random={"count": 0, "strata": 1, "seed": 0}, seeds=[0])
    result = CliRunner().invoke(app, ["bench", "build", str(larger), "--out", str(second_dir / "out"), "--reuse", str(first_dir / "out")])
    assert result.exit_code == 0, result.output
    assert "reused 1 finished entries" in result.output and "1/2 entries done, 1 to train" in result.output
    assert json.loads(entry_file(second_dir / "out", Entry("msclip", 0)).read_text()) == trained  # copied, not retrained

    other = tmp_path / "c"
    other.mkdir()
    changed = tiny_bench(other, policies=["msclip"], random={"count": 0, "strata": 1, "seed": 0}, seeds=[0], optim={"lr": 0.001})
    prepared = prepare(load_bench_config(changed), other / "out")
    from nas.bench.build import reuse_entries

    assert reuse_entries(load_bench_config(changed), other / "out", first_dir / "out", prepared) == []  # another recipe: nothing to reuse

