"""The rank check: proxies scored against a bench table (trivial ones by hand, a searched supernet,
an option's space, the fine-tune proxy, the picks), cached scores, a table of another precision refused,
and a bench scored on its data's own held-out split."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.bench.config import load_bench_config
from nas.bench.policies import bench_policies
from nas.ranking.rank_check import run_rank_check
from nas.ranking.statistics import kendall_tau

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_rank_check_scores_the_trivial_proxies_against_the_bench(tmp_path):
    bench = load_bench_config(EXPERIMENTS / "bench" / "sharebench-tiny.yaml")
    policies = list(bench_policies(bench).items())[:8]
    rng = np.random.default_rng(0)
    from search_spaces import count_params

    table = {
        "config": (EXPERIMENTS / "bench" / "sharebench-tiny.yaml").read_text(),
        "noise_ceiling": {"kendall": 0.5, "kendall_ci": [0.2, 0.7], "spearman": 0.6, "top5_overlap": 0.6},
        "policies": {
            name: {"params": count_params(p, "tiny").total, "policy": p.to_dict(), "mean": {"val_loss": float(1 + rng.random())}}
            for name, p in policies
        },
    }
    (tmp_path / "bench.json").write_text(json.dumps(table))
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump({
        "bench": "bench.json", "search": str(EXPERIMENTS / "tiny" / "gumbel.yaml"), "proxies": ["params", "specific_sublayers"], "bootstrap": 200,
    }))
    result = run_rank_check(config, tmp_path / "out").to_json()
    names = [n for n, _ in policies if n != "clip"]
    assert result["skipped_outside_space"] == (["clip"] if "clip" in dict(policies) else []) and result["n"] == len(names)
    truth = [-table["policies"][n]["mean"]["val_loss"] for n in names]
    params = [table["policies"][n]["params"] for n in names]
    assert result["proxies"]["params"]["kendall"] == pytest.approx(kendall_tau(truth, params))
    assert result["proxies"]["params"]["ratio_to_ceiling"] == pytest.approx(result["proxies"]["params"]["kendall"] / 0.5)
    assert {"kendall", "kendall_ci", "spearman", "top5_overlap"} <= set(result["proxies"]["specific_sublayers"])
    written = json.loads((tmp_path / "out" / "rank_check.json").read_text())
    assert written["n"] == len(names) and written["score_precision"] == "fp32" and written["bench_score_precision"] == "unrecorded"
    from trainer.typed_config import ConfigError

    # another ground truth: a higher-is-better metric of the bench, judged against its own ceiling
    for entry in table["policies"].values():
        entry["mean"]["zeroshot_shapes"] = float(100 * rng.random())
    ceilings = {"val_loss": table["noise_ceiling"], "zeroshot_shapes": {**table["noise_ceiling"], "kendall": 0.25}, "linear_probe_digits": None}
    (tmp_path / "bench.json").write_text(json.dumps({**table, "noise_ceiling_by_metric": ceilings}))
    other = run_rank_check(config, tmp_path / "out", ["truth=zeroshot_shapes"]).to_json()
    zeroshot = [table["policies"][n]["mean"]["zeroshot_shapes"] for n in names]
    assert other["proxies"]["params"]["kendall"] == pytest.approx(kendall_tau(zeroshot, params))
    assert other["proxies"]["params"]["ratio_to_ceiling"] == pytest.approx(other["proxies"]["params"]["kendall"] / 0.25)
    assert other["truth_metric"] == "zeroshot_shapes" and other["noise_ceiling"]["kendall"] == 0.25
    with pytest.raises(ConfigError, match="truth: 'linear_probe_digits' has no noise ceiling"):
        run_rank_check(config, tmp_path / "out", ["truth=linear_probe_digits"])
    (tmp_path / "bench.json").write_text(json.dumps({**table, "score_precision": "bf16"}))

    with pytest.raises(ConfigError, match="scored at bf16, the proxies at fp32"):
        run_rank_check(config, tmp_path / "out")


SEARCH = {
    "space": {"size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2, "arch_fraction": 0.2, "max_eval_images": 40},
    "optim": {"warmup_epochs": None, "warmup_steps": 2},
    "train": {"steps": 6, "batch_size": 16, "num_threads": 1, "progress": False},
    "search": {"warmup_epochs": 0.25, "arch_lr": 0.1, "diagnostics_batch": 0},
    "derive": {"samples": 1, "batch_size": 16, "bn_recalibration_batches": 1},
    "eval": {"nmi_pairs": 0},
}


def test_rank_check_searches_and_scores_a_supernet(tmp_path):
    """Also: an option searched with overrides (here a space without ES / fusion, scored on the three
    policies inside it, beside the parameter count on the same three) and the fine-tune proxy."""
    from search_spaces import count_params, get_preset

    (tmp_path / "search.yaml").write_text(yaml.safe_dump(SEARCH))
    names = ["msclip", "share-all", "clip-t768", "msclip-s"]
    table = {
        "config": yaml.safe_dump({"heldout": {"pairs": 64, "batch_size": 32}}),
        "noise_ceiling": {"kendall": 0.5, "kendall_ci": [0.2, 0.7], "spearman": 0.6, "top5_overlap": 1.0},
        "policies": {n: {"params": count_params(n, "tiny").total, "policy": get_preset(n, "tiny").to_dict(), "mean": {"val_loss": 1.0 + i / 10}}
                     for i, n in enumerate(names)},
    }
    (tmp_path / "bench.json").write_text(json.dumps(table))
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump({
        "bench": "bench.json", "search": "search.yaml", "bootstrap": 100,
        "options": {"noextras": ["space.early_specialization=false", "space.fusion_layers=[]"]},
        "finetune": {"steps": 2, "of": ["supernet"]},
    }))
    result = run_rank_check(config, tmp_path / "out").to_json()
    assert set(result["proxies"]) == {"supernet", "supernet+ft2", "supernet-noextras", "params", "specific_sublayers"}
    losses = [result["policies"][n]["supernet"]["val_loss"] for n in names]
    assert all(np.isfinite(losses)) and len(set(losses)) == len(names)  # each policy takes its own path
    tuned = [result["policies"][n]["supernet+ft2"]["val_loss"] for n in names]
    assert all(a != b for a, b in zip(losses, tuned))  # the fine-tune moved every policy's weights
    assert (tmp_path / "out" / "supernet" / "supernet.safetensors").is_file()
    option = result["proxies"]["supernet-noextras"]
    assert option["n"] == 3 and "msclip-s" not in [n for n in names if "supernet-noextras" in result["policies"][n]]
    subset = [n for n in names if n != "msclip-s"]
    # msclip, share-all, clip-t768: losses 1.0 < 1.1 < 1.2, parameters share-all < msclip < clip-t768, so of
    # the 3 pairs (msclip, share-all) is concordant and both pairs with clip-t768 discordant: tau = (1 - 2) / 3
    assert [table["policies"][n]["params"] for n in ("share-all", "msclip", "clip-t768")] == sorted(table["policies"][n]["params"] for n in subset)
    assert option["params_kendall_same_policies"] == pytest.approx(-1 / 3)
    assert result["runs"]["supernet-noextras"]["set"] == ["space.early_specialization=false", "space.fusion_layers=[]"]
    picks = {row["chosen as"]: row["policy"] for row in result["picks"]}
    assert picks["pick of the params proxy"] == max(names, key=lambda n: table["policies"][n]["params"])
    assert picks["pick of the supernet proxy"] == min(names, key=lambda n: result["policies"][n]["supernet"]["val_loss"])
    again = run_rank_check(config, tmp_path / "out").to_json()  # cached scores, no search or scoring again
    assert again["proxies"]["supernet"]["kendall"] == result["proxies"]["supernet"]["kendall"]


def test_rank_check_on_a_data_split_scores_its_held_out_pairs_and_one_seed_of_a_table(tmp_path, monkeypatch):
    """A bench scored on its data's own held-out split (the real set): the supernet's paths are scored on
    those pairs, and a table proxy can stand for one seed of a two-seed table (`table_seeds`)."""
    from search_spaces import count_params, get_preset
    from tests.realset_fixtures import RULES, glyph, write_packages
    from trainer.data.realset.build import build_realset

    build_realset(tmp_path / "set", write_packages(tmp_path / "packages"), RULES, workers=1, glyphs=glyph)
    search = {**SEARCH, "data": {"source": "real", "path": str(tmp_path / "set"), "arch_fraction": 0.2}}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    names = ["msclip", "share-all", "clip-t768"]

    def policies(losses):
        return {n: {"params": count_params(n, "tiny").total, "policy": get_preset(n, "tiny").to_dict(), "mean": {"val_loss": sum(v) / 2},
                    "runs": [{"seed": s, "val_loss": v[s]} for s in (0, 1)]} for n, v in zip(names, losses)}

    table = {"config": yaml.safe_dump({"heldout": {"source": "data", "batch_size": 8}}), "chance": {"val_loss": 2.0},
             "noise_ceiling": {"kendall": 0.5, "kendall_ci": [0.2, 0.7], "spearman": 0.6, "top5_overlap": 1.0},
             "policies": policies([(1.0, 1.0), (1.1, 1.1), (1.2, 1.2)])}
    (tmp_path / "bench.json").write_text(json.dumps(table))
    # seed 0 ranks msclip < share-all < clip-t768 like the bench, the mean over both seeds reverses it
    (tmp_path / "short.json").write_text(json.dumps({**table, "policies": policies([(1.0, 3.0), (1.1, 2.0), (1.2, 1.0)])}))
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump({"bench": "bench.json", "search": "search.yaml", "bootstrap": 100,
                                      "tables": {"short-seed0": "short.json", "short": "short.json"}, "table_seeds": {"short-seed0": [0]}}))
    import nas.bench.build

    scored_sets = []
    original = nas.bench.build.held_out_pairs

    def recording(section, bundle, size):
        scored_sets.append(pairs := original(section, bundle, size))
        return pairs

    monkeypatch.setattr(nas.bench.build, "held_out_pairs", recording)
    result = run_rank_check(config, tmp_path / "out").to_json()
    held = len(list(csv.DictReader((tmp_path / "set" / "heldout.csv").open())))
    assert scored_sets and all(len(p) == held for p in scored_sets)  # the set's held-out pairs, not generated shapes
    assert result["proxies"]["short-seed0"]["kendall"] == pytest.approx(1.0) and result["proxies"]["short"]["kendall"] == pytest.approx(-1.0)
    assert result["val_loss_chance"] == 2.0  # the bench's own chance level, not that of generated pairs
    scored = json.loads((tmp_path / "out" / "supernet" / "rank_scores.json").read_text())
    assert len(scored) == 1 and all(np.isfinite(result["policies"][n]["supernet"]["val_loss"]) for n in names)
