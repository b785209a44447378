"""One way to compose a config that trains (`trainer.compose`): the trainer's sections written over the
`recipe:` the config names, then `--set`, the same in every command; and the old spellings still read."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nas.bench.config import BenchConfig, load_bench_config
from nas.bench.record import BenchRecord
from nas.cli.app import app
from nas.discrete.config import load_search_config
from nas.ranking.config import RankCheckConfig
from nas.supernet.config import GumbelConfig
from trainer.compose import RECIPE, TRAINER_SECTIONS, TrainerSections
from trainer.config import TrainConfig
from trainer.typed_config import ConfigError, config_diff, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


class Reached(Exception):
    """Raised by a stand-in for the first training a command starts, with that training's epochs."""


def _stand_in(monkeypatch, target: str, epochs) -> None:
    def stop(*args, **kwargs):
        raise Reached(epochs(*args))

    monkeypatch.setattr(target, stop)


STOPS = {
    "train": ("trainer.run.train", lambda cfg, *_: cfg.train.epochs),
    "search gumbel": ("nas.supernet.search.run_gumbel_search", lambda cfg, *_: cfg.train.epochs),
    "search conflict": ("nas.conflict.search.run_conflict_search", lambda cfg, *_: cfg.train.epochs),
    "search optuna": ("nas.discrete.search.run_search", lambda cfg, *_: cfg.train_template.train.epochs),
    "bench build": ("nas.bench.build._build", lambda bench, *_: bench.recipe.train.epochs),
    "search rank-check": ("nas.ranking.rank_check.searched_run", lambda out, cfg: cfg.train.epochs),
}
"""Each command that trains -> where its first training starts, and the epochs of the config it is given."""
EXTRA = {"search rank-check": ["--set", "proxies=[supernet]"]}
"""Arguments the test adds to skip work before the first training (the zero-cost proxies)."""


def readme_example() -> list[str]:
    """The README's one `--set train.epochs` example: a command per line."""
    blocks = [b for b in re.findall(r"```text\n(.*?)```", (ROOT / "README.md").read_text(), re.S) if "--set train.epochs=" in b]
    assert len(blocks) == 1, "the README shows one ```text block of commands with --set train.epochs"
    return blocks[0].strip().splitlines()


def _tune_stand_in(monkeypatch) -> None:
    """`tune` loads its search with its sections before Ray is imported; stop right after that load."""
    import nas.discrete.config

    real = nas.discrete.config.load_search_config

    def stop(*args):
        raise Reached(real(*args).train_template.train.epochs)

    monkeypatch.setattr(nas.discrete.config, "load_search_config", stop)
    for name in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # what the driver sets for a local Ray is undone after the test


def test_the_readme_example_sets_the_trainers_epochs_in_every_command(tmp_path, monkeypatch):
    (tmp_path / "experiments").symlink_to(EXPERIMENTS)
    monkeypatch.chdir(tmp_path)
    lines = readme_example()
    commands = set()
    for line in lines:
        words = shlex.split(line)
        assert words[0].endswith("sharenas"), line
        command = " ".join(w for w in words[1:3] if not w.endswith(".yaml"))
        epochs = int(next(w for w in words if w.startswith("train.epochs=")).split("=")[1])
        if command == "tune":
            _tune_stand_in(monkeypatch)
        else:
            _stand_in(monkeypatch, *STOPS[command])
        result = CliRunner().invoke(app, [*words[1:], *EXTRA.get(command, [])])
        assert isinstance(result.exception, Reached), f"{line}: {result.output}{result.exception!r}"
        assert result.exception.args[0] == epochs, line
        commands.add(command)
    assert commands == {*STOPS, "tune"}


def test_per_compute_sets_the_recipe_and_refuses_one_its_table_was_not_built_with(tmp_path, monkeypatch):
    """The study's unit is a standalone run of the bench's recipe, so a trainer key it sets must be the
    table's: `--set train.epochs` reaches the recipe and is refused, naming the key."""
    import torch

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["search", "per-compute", str(EXPERIMENTS / "tiny" / "per_compute.yaml"), "--out", "pc",
                                          "--set", "train.epochs=2"])
    finally:
        torch.set_num_threads(threads)  # the study runs on one thread
    assert result.exit_code == 2
    assert "is not the config ../results/sharebench-tiny.json was built with (train.epochs differ)" in result.output


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_recipe_is_relative_to_its_config_and_may_name_its_own(tmp_path, monkeypatch):
    _write(tmp_path / "recipes" / "base.yaml", {"model": {"size": "tiny"}, "optim": {"lr": 1e-3},
                                                 "train": {"epochs": 6, "batch_size": 32}, "eval": {"nmi_pairs": 0}})
    _write(tmp_path / "recipes" / "short" / "mid.yaml", {RECIPE: "../base.yaml", "train": {"epochs": 2}})
    config = _write(tmp_path / "configs" / "run.yaml", {RECIPE: "../recipes/short/mid.yaml", "train": {"batch_size": 8}})
    monkeypatch.chdir(tmp_path / "recipes")  # the working directory plays no part
    cfg = load_config(config, TrainConfig, ["optim.final_lr=0"])
    assert (cfg.model.size, cfg.optim.lr, cfg.optim.final_lr, cfg.train.epochs, cfg.train.batch_size, cfg.eval.nmi_pairs) == \
        ("tiny", 1e-3, 0.0, 2, 8, 0)
    search = _write(tmp_path / "configs" / "gumbel.yaml", {RECIPE: "../recipes/short/mid.yaml", "space": {"size": "tiny"}})
    gumbel = load_config(search, GumbelConfig, ["train.epochs=3"])  # a search's size is its own: the recipe's model is not taken
    assert (gumbel.optim.lr, gumbel.train.epochs, gumbel.train.batch_size) == (1e-3, 3, 32)
    assert load_config(config, TrainConfig, [f"recipe={tmp_path / 'recipes' / 'base.yaml'}"]).train.epochs == 6


@pytest.mark.parametrize(("files", "overrides", "message"), [
    ({"run.yaml": {RECIPE: "base.yaml", "train": {"epoch": 3}}}, [], "unknown key 'train.epoch': valid keys under 'train' are epochs, steps"),
    ({"run.yaml": {RECIPE: "base.yaml"}}, ["train.epoch=3"], "unknown key 'train.epoch'"),
    ({"run.yaml": {RECIPE: "missing.yaml"}}, [], "recipe: {tmp}/missing.yaml does not exist"),
    ({"run.yaml": {RECIPE: "gumbel.yaml"}, "gumbel.yaml": {"space": {}}}, [], "recipe: {tmp}/gumbel.yaml has the key 'space'"),
    ({"run.yaml": {RECIPE: "loop.yaml"}, "loop.yaml": {RECIPE: "run.yaml"}}, [], "recipe: {tmp}/loop.yaml names itself"),
])
def test_composition_errors_are_one_line_naming_the_key(tmp_path, files, overrides, message):
    _write(tmp_path / "base.yaml", {"train": {"epochs": 1}})
    for name, data in files.items():
        _write(tmp_path / name, data)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "run.yaml", TrainConfig, overrides)
    assert message.format(tmp=tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_configs_that_run_others_check_their_trainer_keys_where_they_apply_them(tmp_path):
    config = _write(tmp_path / "bench.yaml", {RECIPE: str(EXPERIMENTS / "tiny" / "msclip.yaml")})
    with pytest.raises(ConfigError, match=r"^unknown key 'train\.epoch': valid keys under 'train' are epochs, steps"):
        load_bench_config(config, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="unknown key 'recipe'"):
        load_config({RECIPE: "msclip.yaml"}, RankCheckConfig)  # a recipe is for a config that trains
    assert TrainerSections(train={"epochs": 2}, data={"path": "x"}, model={"size": "small"}).sets(GumbelConfig) == \
        ['data.path="x"', "train.epochs=2"]


def test_the_old_spellings_load_as_the_new_ones_and_say_so(tmp_path, capsys):
    recipe = EXPERIMENTS / "tiny" / "msclip.yaml"
    old = _write(tmp_path / "old.yaml", {"n_trials": 4, "train": {"base": str(recipe), "train": {"epochs": 2}, "eval": {"nmi_pairs": 0}}})
    new = _write(tmp_path / "new.yaml", {"n_trials": 4, RECIPE: str(recipe), "train": {"epochs": 2}, "eval": {"nmi_pairs": 0}})
    assert to_dict(load_search_config(old)) == to_dict(load_search_config(new))
    load_search_config(old)
    assert capsys.readouterr().err.count("is the old spelling of `recipe: RECIPE`") == 1  # once per file
    bench_old = _write(tmp_path / "bench-old.yaml", {"train": str(recipe), "train_overrides": ["train.epochs=2", "eval.every_epochs=null"]})
    bench_new = _write(tmp_path / "bench-new.yaml", {RECIPE: str(recipe), "train": {"epochs": 2}, "eval": {"every_epochs": None}})
    a, b = load_bench_config(bench_old), load_bench_config(bench_new)
    assert (to_dict(a.cfg), to_dict(a.recipe)) == (to_dict(b.cfg), to_dict(b.recipe))
    assert "`train: RECIPE` with `train_overrides: [KEY=VALUE, ...]` is the old spelling" in capsys.readouterr().err


def _by_name() -> dict[str, Path]:
    return {yaml.safe_load(p.read_text())["name"]: p for p in (EXPERIMENTS / "bench").rglob("*.yaml")}


RECIPE_KEYS = (RECIPE, *TRAINER_SECTIONS)


@pytest.mark.parametrize("result", sorted(p.name for p in (EXPERIMENTS / "results").glob("*.json")
                                          if "config" in json.loads(p.read_text()) and isinstance(json.loads(p.read_text())["config"], str)))
def test_committed_tables_record_the_recipe_their_bench_config_composes(result):
    """Every committed table (written in the old spelling) still loads, and names the recipe and the
    trainer keys its bench config, in the new spelling, writes over it: the benches train what they trained."""
    table = json.loads((EXPERIMENTS / "results" / result).read_text())
    built = BenchRecord.from_json(table).bench_config()
    bench = load_bench_config(_by_name()[built.name])
    assert [k for k in config_diff(built, bench.cfg) if k.split(".")[0] in RECIPE_KEYS] == []


def test_a_bench_directory_of_the_old_spelling_goes_on_with_the_new_config():
    built = load_config(EXPERIMENTS / "results" / "regime" / "full-w64" / "config.yaml", BenchConfig)
    bench = load_bench_config(EXPERIMENTS / "bench" / "regime" / "full-w64.yaml")
    assert [k for k in config_diff(built, bench.cfg) if k.split(".")[0] in RECIPE_KEYS] == []
