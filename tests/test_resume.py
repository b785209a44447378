"""Checkpoints, exact mid-epoch resume, divergence handling and the deterministic data order."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainer.checkpoint import latest_checkpoint, list_checkpoints
from trainer.config import TrainConfig
from trainer.loop import TrainingDiverged, _Trainer, train
from trainer.metrics import read_metrics, trained_seconds
from trainer.sampler import BatchPlan
from trainer.typed_config import ConfigError, load_config


def tiny_config(**train_overrides) -> TrainConfig:
    """msclip at the tiny size on 200 generated shapes: 140 training pairs, 8 steps per epoch of 16."""
    train_section = {"steps": 12, "epochs": None, "batch_size": 16, "log_every": 1, "checkpoint_every": 5, "progress": False, "num_threads": 1}
    train_section.update(train_overrides)
    return load_config(
        {
            "model": {"policy": "msclip", "size": "tiny"},
            "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2},
            "optim": {"lr": 1e-3, "warmup_epochs": None, "warmup_steps": 3},
            "train": train_section,
            "eval": {"every_epochs": None, "nmi_pairs": 0, "batch_size": 64},
        },
        TrainConfig,
    )


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train/loss"]) for r in read_metrics(run_dir) if "train/loss" in r]


class Killed(Exception):
    pass


def test_resume_mid_epoch_gives_identical_losses_and_weights(tmp_path, monkeypatch):
    cfg = tiny_config()
    full = train(cfg, tmp_path / "full")
    assert full.step == 12 and "retrieval/shapes/i2t_r1" in full.metrics

    original = _Trainer._step

    def dies_before_step_8(self, micro, step):
        if step == 7:
            raise Killed
        return original(self, micro, step)

    monkeypatch.setattr(_Trainer, "_step", dies_before_step_8)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "run")
    assert latest_checkpoint(tmp_path / "run").name == "step_00000005"  # mid-epoch: 8 steps per epoch
    assert [s for s, _ in losses(tmp_path / "run")] == list(range(1, 8))
    monkeypatch.setattr(_Trainer, "_step", original)

    at_checkpoint = [r["train/seconds"] for r in read_metrics(tmp_path / "run") if r["step"] == 5][0]
    resumed = train(cfg, tmp_path / "run", resume=True)
    assert losses(tmp_path / "run") == losses(tmp_path / "full")  # bit-identical, each step logged once
    seconds = [r["train/seconds"] for r in read_metrics(tmp_path / "run") if "train/seconds" in r]
    assert len(seconds) == 12 and seconds[4] == at_checkpoint  # the first session's seconds up to its checkpoint
    assert all(b > a for a, b in zip(seconds, seconds[1:])) and trained_seconds(tmp_path / "run") == seconds[-1]  # then carried on
    assert len(losses(tmp_path / "full")) == 12
    weights_full = load_file(str(latest_checkpoint(tmp_path / "full") / "model.safetensors"))
    weights_resumed = load_file(str(latest_checkpoint(tmp_path / "run") / "model.safetensors"))
    assert all(torch.equal(weights_full[k], weights_resumed[k]) for k in weights_full)
    assert resumed.metrics == full.metrics
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000012"]  # keep_checkpoints=1


def test_checkpoint_holds_only_safetensors_and_json(tmp_path):
    train(tiny_config(steps=2, checkpoint_every=None), tmp_path)
    checkpoint = latest_checkpoint(tmp_path)
    assert sorted(p.name for p in checkpoint.iterdir()) == ["model.safetensors", "optimizer.safetensors", "rng-rank0.json", "state.json"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == checkpoint.name
    assert (tmp_path / "config.yaml").is_file()
    assert load_config(tmp_path / "config.yaml", TrainConfig) == tiny_config(steps=2, checkpoint_every=None)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from trainer import step

    real = step.contrastive_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * math.nan if len(calls) == 4 else loss

    monkeypatch.setattr(step, "contrastive_loss", poisoned)
    with pytest.raises(TrainingDiverged) as err:
        train(tiny_config(steps=6, checkpoint_every=2), tmp_path)
    message = str(err.value)
    assert "the loss is nan at step 4" in message and "step_00000002" in message and "--resume" in message
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    weights = load_file(str(latest_checkpoint(tmp_path) / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert [s for s, _ in losses(tmp_path)] == [1, 2, 3]


def test_run_dir_guards(tmp_path):
    train(tiny_config(steps=1), tmp_path)
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        train(tiny_config(steps=1), tmp_path)
    changed = tiny_config(steps=1)
    changed.model.policy = "clip"
    with pytest.raises(ConfigError, match=r"another config \(model.policy differ"):
        train(changed, tmp_path, resume=True)


def test_batch_plan_is_deterministic_and_sharded():
    one = BatchPlan(100, 16, accum_steps=1, world_size=1, seed=3)
    two = BatchPlan(100, 16, accum_steps=2, world_size=2, seed=3)
    assert one.steps_per_epoch == 6 and two.micro_batch == 4
    for step in range(6):
        (whole,) = one.micro_batches(1, step, rank=0)
        parts = [idx for rank in range(2) for micro in two.micro_batches(1, step, rank) for idx in micro]
        assert parts == whole and len(set(whole)) == 16
    assert one.micro_batches(0, 0, 0) != one.micro_batches(1, 0, 0)
    assert one.micro_batches(0, 2, 0) == BatchPlan(100, 16, 1, 1, seed=3).micro_batches(0, 2, 0)
    assert list(one.sampler(2, 4, 0)) == [one.micro_batches(2, 4, 0)[0], one.micro_batches(2, 5, 0)[0]]
    epoch = [i for step in range(6) for i in one.micro_batches(0, step, 0)[0]]
    assert len(set(epoch)) == 96
    with pytest.raises(ValueError, match="not divisible by processes x train.accum_steps"):
        BatchPlan(100, 10, accum_steps=4, world_size=1, seed=0)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchPlan(10, 16, 1, 1, 0)
