"""The typed YAML config loader and the training config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from trainer.compose import TRAINER_SECTIONS
from trainer.config import OptimConfig, TrainConfig
from trainer.typed_config import ConfigError, config_diff, dump_config, load_config, parse_budget, to_dict

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@dataclass
class Inner:
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)
    pair: tuple[int, int] = (1, 2)
    name: Optional[str] = None


@dataclass
class Outer:
    count: int
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_nested_values_are_converted_and_typed():
    cfg = load_config({"count": 3, "inner": {"rate": 2, "mode": "b", "tags": ["x"], "pair": [4, 5]}}, Outer)
    assert cfg == Outer(3, False, Inner(2.0, "b", ["x"], (4, 5), None))
    assert isinstance(cfg.inner.rate, float) and isinstance(cfg.inner.pair, tuple)


def test_unknown_key_names_dotted_path_and_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config({"count": 1, "inner": {"rat": 1.0}}, Outer)
    assert "'inner.rat'" in str(err.value)
    assert "rate, mode, tags, pair, name" in str(err.value)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"count": "3"}, "count is '3' (str): expected int"),
        ({"count": True}, "count is True (bool): expected int"),
        ({"count": 1.5}, "expected int"),
        ({"count": 1, "flag": 1}, "flag is 1 (int): expected bool"),
        ({"count": 1, "inner": {"mode": "c"}}, "inner.mode is 'c': expected one of 'a', 'b'"),
        ({"count": 1, "inner": {"tags": ["x", 2]}}, "inner.tags[1]"),
        ({"count": 1, "inner": {"pair": [1]}}, "inner.pair has 1 items: expected 2"),
        ({"count": 1, "inner": 5}, "inner is 5: expected a mapping"),
        ({"count": None}, "count must not be null"),
        ({}, "count is required"),
        ({"count": "???"}, "count is required: set it in the YAML file or with --set count=..."),
    ],
)
def test_type_errors_name_the_key(data, needle):
    with pytest.raises(ConfigError) as err:
        load_config(data, Outer)
    assert needle in str(err.value)


def test_overrides_are_yaml_scalars_checked_against_the_field():
    cfg = load_config({"count": 1}, Outer, ["inner.rate=1e-3", "flag=true", "inner.name=123", "inner.tags=[a, b]"])
    assert cfg.inner.rate == 1e-3 and cfg.flag is True
    assert cfg.inner.name == "123"  # a string field keeps the text as written
    assert cfg.inner.tags == ["a", "b"]
    with pytest.raises(ConfigError, match="count is 'many'"):
        load_config({"count": 1}, Outer, ["count=many"])
    with pytest.raises(ConfigError, match="unknown key 'inner.nope'"):
        load_config({"count": 1}, Outer, ["inner.nope=1"])
    with pytest.raises(ConfigError, match="bad override 'count'"):
        load_config({"count": 1}, Outer, ["count"])
    with pytest.raises(ConfigError, match="inner.rate is not a section"):
        load_config({"count": 1, "inner": {"rate": 1.0}}, Outer, ["inner.rate.x=1"])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", Outer)
    bad = tmp_path / "bad.yaml"
    bad.write_text("count: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML.*line"):
        load_config(bad, Outer)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listed, Outer)


@pytest.mark.parametrize(
    ("value", "count"),
    [("130M", 130_000_000), ("3.94M", 3_940_000), ("4.1M", 4_100_000), ("2.01k", 2_010), ("900k", 900_000), ("800k", 800_000), ("1.5G", 1_500_000_000),
     ("1.2B", 1_200_000_000), (" 130 m ", 130_000_000), ("1.3e8", 130_000_000), (12345, 12345), (125_000_000, 125_000_000),
     (1.3e8, 130_000_000), (None, None)],
)
def test_parameter_budgets_parse_to_the_nearest_count(value, count):
    assert parse_budget(value, "search.budget") == count


@pytest.mark.parametrize("value", ["lots", "-3M", "130MB", "1_000", "nan", True, 0, "0k", float("inf")])
def test_bad_parameter_budgets_name_the_key(value):
    with pytest.raises(ConfigError, match=r"^param_budget: .* (is not a|must be a positive) parameter count"):
        parse_budget(value, "param_budget")


def test_train_config_round_trips_through_yaml(tmp_path):
    cfg = load_config({"train": {"steps": 7, "epochs": None}, "optim": {"no_decay": ["bias"]}}, TrainConfig)
    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml", TrainConfig)
    assert again == cfg and config_diff(cfg, again) == []
    changed = load_config(to_dict(cfg), TrainConfig, ["optim.lr=0.1", "model.size=small"])
    assert config_diff(cfg, changed) == ["model.size", "optim.lr"]


def test_train_config_section_checks():
    with pytest.raises(ConfigError, match="exactly one of train.epochs and train.steps"):
        load_config({"train": {"epochs": 1, "steps": 2}}, TrainConfig)
    with pytest.raises(ConfigError, match="warmup_epochs or optim.warmup_steps"):
        OptimConfig(warmup_steps=10)
    with pytest.raises(ConfigError, match="optim.no_decay\\[0\\] is 'norms'"):
        load_config({"optim": {"no_decay": ["norms"]}}, TrainConfig)
    with pytest.raises(ConfigError, match="data.source"):
        load_config({"data": {"source": "imagenet"}}, TrainConfig)


@pytest.mark.parametrize("name", ["tiny/msclip.yaml", "tiny/clip.yaml"])
def test_shipped_tiny_configs_load(name):
    cfg = load_config(EXPERIMENTS / name, TrainConfig)
    assert cfg.model.size == "tiny" and cfg.data.source == "embedded"


@pytest.mark.parametrize("name", ["clip", "msclip", "msclip-s"])
def test_b32_recipes_require_a_data_path(name):
    path = EXPERIMENTS / "b32" / f"{name}.yaml"
    with pytest.raises(ConfigError, match="data.path is required: set it .* --set data.path="):
        load_config(path, TrainConfig)
    cfg = load_config(path, TrainConfig, ["data.path=/data/yfcc.csv"])
    assert (cfg.model.policy, cfg.model.size) == (name, "b32")
    assert (cfg.optim.lr, cfg.optim.final_lr, cfg.optim.warmup_epochs) == (1.6e-3, 1.6e-4, 5.0)
    assert cfg.train.batch_size == 4096
    assert (cfg.optim.weight_decay_shared, cfg.optim.weight_decay_specific) == (0.2, 0.2 if name == "clip" else 0.05)


def _differences(a: dict, b: dict) -> dict:
    return {(section, key): (a[section][key], b[section][key]) for section in a for key in a[section] if a[section][key] != b[section][key]}


def test_the_real_front_configs_are_the_tiny_ones_on_the_real_set():
    """experiments/real/{gumbel-sweep,pareto}.yaml change only the data (and its epoch length) of the tiny
    ones, and a real pareto trial trains exactly ShareBench-real-tiny's recipe."""
    from nas.bench.config import load_bench_config
    from nas.discrete.config import load_search_config
    from nas.supernet.config import GumbelConfig

    sweep = [to_dict(load_config(EXPERIMENTS / d / "gumbel-sweep.yaml", GumbelConfig)) for d in ("tiny", "real")]
    assert _differences(*sweep) == {("data", "source"): ("embedded", "real"), ("data", "path"): (None, "data/real"),
                                    ("data", "max_eval_images"): (1000, 2000), ("train", "checkpoint_every"): (61, 85)}
    tiny, real = (load_search_config(EXPERIMENTS / d / "pareto.yaml") for d in ("tiny", "real"))
    a, b = to_dict(tiny), to_dict(real)
    assert {k for k in a if a[k] != b[k]} - set(TRAINER_SECTIONS) == {"study_name", "objective"}
    assert (b["objective"]["metric"], b["objective"]["reference_point"]) == ("heldout/real/loss", {"heldout/real/loss": 4.808, "latency": 1.0})
    assert {k: v for k, v in a["objective"].items() if k not in ("metric", "reference_point")} == \
        {k: v for k, v in b["objective"].items() if k not in ("metric", "reference_point")}
    recipe = load_bench_config(EXPERIMENTS / "bench" / "sharebench-real-tiny.yaml").recipe
    assert _differences(to_dict(recipe), to_dict(real.train_template)) == {
        ("train", "checkpoint_every"): (100, None), ("train", "progress"): (True, False),
        ("eval", "every_epochs"): (None, 2)}  # when to checkpoint, print and evaluate (the end), not what is trained
