"""GPU speed options (`trainer.acceleration`) that must not change what is trained: `train.compile`
trains the same losses as eager mode; the Gumbel search, which runs a new path each step, refuses
compile and accumulation with one line naming the fix."""
from __future__ import annotations

import pytest

from test_gumbel_search import short_config
from test_memory import config
from trainer.typed_config import ConfigError
from trainer.loop import train
from trainer.metrics import read_metrics


@pytest.mark.slow  # inductor compiles the tiny model's forward and backward on CPU: minutes
def test_a_compiled_model_trains_the_losses_of_the_eager_one(tmp_path):
    train(config(compile=True), tmp_path / "compiled")
    train(config(), tmp_path / "eager")
    compiled, eager = ([r["train/loss"] for r in read_metrics(tmp_path / d) if "train/loss" in r] for d in ("compiled", "eager"))
    assert len(compiled) == 2 and compiled == pytest.approx(eager, rel=1e-4)


@pytest.mark.parametrize("train_section, fix", [({"compile": True}, "set train.compile=false"), ({"micro_batch": "auto"}, "lower train.batch_size"),
                                                ({"accum_steps": 2}, "lower train.batch_size")])
def test_the_gumbel_search_refuses_compile_and_accumulation_naming_the_fix(train_section, fix):
    with pytest.raises(ConfigError, match=fix):
        short_config(train=train_section)
