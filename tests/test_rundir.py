"""The one run directory (trainer.rundir.RunDir): new, resume, auto, refusal naming the changed keys, lock."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from trainer.rundir import RunDir
from trainer.typed_config import ConfigError


@dataclass
class Inner:
    width: int = 64
    """Width."""


@dataclass
class Config:
    seed: int = 0
    """Seed."""
    steps: int = 10
    """Steps."""
    model: Inner = field(default_factory=Inner)
    """Model."""


def test_a_new_run_starts_in_an_empty_directory_and_is_refused_where_one_is(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.open(Config(), resume=False) is False and run.config_file.is_file()
    with pytest.raises(ConfigError, match=f"{tmp_path / 'run'} already holds a run: pass --resume"):
        run.check(Config(), resume=False)
    checkpoints_only = RunDir(tmp_path / "other")
    (checkpoints_only.path / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        checkpoints_only.check(Config(), resume=False)


def test_resume_needs_a_run_and_names_the_keys_that_changed(tmp_path):
    run = RunDir(tmp_path / "run", "search")
    with pytest.raises(ConfigError, match="holds no search to resume .*drop --resume"):
        run.check(Config(), resume=True)
    run.open(Config(), resume=False)
    assert run.check(Config(), resume=True) is True
    changed = Config(seed=1, steps=20, model=Inner(width=128))
    with pytest.raises(ConfigError, match=r"another config \(seed, steps, model.width differ"):
        run.check(changed, resume=True)
    # only the fixed prefixes must match; () compares none
    with pytest.raises(ConfigError, match=r"\(seed, model.width differ"):
        run.check(changed, resume=True, fixed=("seed", "model."))
    assert run.check(changed, resume=True, fixed=()) is True


def test_auto_resumes_where_a_run_is_and_starts_where_none_is(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.check(Config(), resume="auto") is False
    run.open(Config(), resume="auto")
    assert run.check(Config(), resume="auto") is True
    with pytest.raises(ConfigError, match="another config"):
        run.check(Config(steps=3), resume="auto")


def test_a_resumed_trainer_run_may_start_from_a_checkpoint_put_there_without_a_config(tmp_path):
    run = RunDir(tmp_path / "branch")
    (run.path / "checkpoints" / "step_00000003").mkdir(parents=True)
    assert run.check(Config(), resume=True, need_config=False) is True
    with pytest.raises(ConfigError, match="holds no run to resume"):
        run.check(Config(), resume=True)


def test_the_lock_refuses_a_second_writer_naming_the_first(tmp_path):
    import os

    run = RunDir(tmp_path / "run")
    with run.lock():
        with pytest.raises(ConfigError, match=f"is being written by pid {os.getpid()}"):
            with RunDir(tmp_path / "run").lock():
                pass
    with run.lock():  # released on exit
        pass


def test_start_over_removes_what_an_attempt_left(tmp_path):
    run = RunDir(tmp_path / "trial")
    run.open(Config(), resume=False)
    (run.path / "metrics.jsonl").write_text("{}\n")
    run.start_over()
    assert not run.path.exists()
    run.start_over()  # nothing there: nothing to do
