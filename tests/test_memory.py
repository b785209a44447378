"""The memory estimate of a training step (`trainer.memory`): a config that cannot fit is refused
before training with one line naming the fix, `train.micro_batch: auto` picks the micro-batch that
fits and trains exactly like that accumulation, and the B/32 configs state what the estimator says.
The memory sizes are fake (`train.memory_gb`), placed around the estimator's own figures."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search_spaces import build_model
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.memory import GB, USABLE, main, step_memory
from trainer.metrics import read_metrics
from trainer.typed_config import ConfigError, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
RAW = {
    "model": {"policy": "msclip", "size": "tiny"},
    "data": {"source": "shapes", "num_shapes": 120, "shapes_zeroshot_per_class": 2, "max_eval_images": 40},
    "optim": {"warmup_epochs": None, "warmup_steps": 1},
    "train": {"steps": 2, "epochs": None, "batch_size": 16, "device": "cpu", "num_threads": 1, "progress": False, "checkpoint_every": None,
              "log_every": 1},
    "eval": {"every_epochs": None, "nmi_pairs": 0, "batch_size": 64},
}


def config(**train) -> TrainConfig:
    return load_config({**RAW, "train": {**RAW["train"], **train}}, TrainConfig)


@pytest.fixture(scope="module")
def estimate():
    cfg = config()
    return step_memory(build_model("msclip", "tiny"), cfg.train, 1)


def between(estimate, fits: int, too_big: int) -> float:
    """A memory size (GB) in which micro-batch `fits` fits and `too_big` does not."""
    return (estimate.at(fits) + estimate.at(too_big)) / 2 / USABLE / GB


def sharenas_train(cfg: TrainConfig, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return subprocess.run([sys.executable, "-m", "nas.cli", "train", str(path), "--out", str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_estimate_grows_with_the_micro_batch_and_counts_the_optimizer_state(estimate):
    params = sum(p.numel() for p in build_model("msclip", "tiny").parameters())
    assert estimate.params == params and estimate.state == 16 * params
    assert estimate.per_sample > 0 and estimate.at(8) - estimate.at(4) > 4 * estimate.per_sample
    with_checkpointing = step_memory(build_model("msclip", "tiny"), config(grad_checkpointing=True).train, 1)
    assert with_checkpointing.per_sample < estimate.per_sample / 2


def test_a_config_that_cannot_fit_is_refused_before_training_with_one_line_naming_the_fix(estimate, tmp_path):
    refused = sharenas_train(config(memory_gb=between(estimate, 4, 8)), tmp_path / "run", tmp_path)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: a step at micro-batch 16 needs about") and line.endswith("set train.micro_batch=auto (it fits 4, accumulating 4 micro-batches)")
    assert not (tmp_path / "run").exists()  # nothing written: training never started
    with pytest.raises(ConfigError, match="the parameters and their optimizer state alone take .* use a device with more memory"):
        train(config(memory_gb=estimate.state * 0.9 / GB), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_micro_batch_auto_accumulates_what_does_not_fit_and_trains_like_that_accumulation(estimate, tmp_path):
    train(config(micro_batch="auto", memory_gb=between(estimate, 4, 8)), tmp_path / "auto")
    train(config(accum_steps=4), tmp_path / "accum")
    auto, accum = ([(r["step"], r["train/loss"]) for r in read_metrics(tmp_path / d) if "train/loss" in r] for d in ("auto", "accum"))
    assert auto == accum and len(auto) == 2


B32 = sorted((ROOT / "experiments" / "b32").glob("*.yaml"))
ESTIMATE = re.compile(r"memory estimate \((python -m trainer\.memory [^)]*)\):\n#   (.*)\n")


@pytest.mark.parametrize("path", [p for p in B32 if p.name != "optuna_b32.yaml"], ids=lambda p: p.name)
def test_the_b32_configs_state_their_memory_estimate_for_the_hardware_they_name(path, capsys):
    found = ESTIMATE.findall(path.read_text())
    assert found, f"{path.name} states no memory estimate"
    for command, stated in found:
        config, *args = command.split()[3:]
        assert main([str(ROOT / config), *args]) == 0
        assert capsys.readouterr().out.strip() == stated, command
