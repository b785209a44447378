"""`sharenas train` / `sharenas eval`: user errors exit 2 with one line, a run directory is complete."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nas import run_commands
from trainer.metrics import read_metrics

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
FAST = [
    "--set", "data.source=shapes", "--set", "data.num_shapes=200", "--set", "data.shapes_zeroshot_per_class=2",
    "--set", "train.epochs=null", "--set", "train.steps=2", "--set", "train.batch_size=16",
    "--set", "train.log_every=1", "--set", "train.progress=false", "--set", "train.num_threads=1",
    "--set", "eval.nmi_pairs=4", "--set", "eval.every_epochs=null",
]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("train")(run_commands.train)
    app.command("eval")(run_commands.evaluate)
    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.output
    assert "Traceback" not in result.output


def test_bad_yaml(app, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {policy: msclip\n")
    assert_user_error(invoke(app, "train", bad, "--out", tmp_path / "run"), "invalid YAML")


def test_missing_file_unknown_key_bad_value(app, tmp_path):
    assert_user_error(invoke(app, "train", tmp_path / "nope.yaml", "--out", tmp_path / "run"), "does not exist")
    assert_user_error(invoke(app, "train", EXPERIMENTS / "tiny/msclip.yaml", "--out", tmp_path / "run", "--set", "optim.lrr=1"), "unknown key 'optim.lrr'")
    assert_user_error(
        invoke(app, "train", EXPERIMENTS / "tiny/msclip.yaml", "--out", tmp_path / "run", "--set", "train.batch_size=many"),
        "train.batch_size is 'many'",
    )
    result = invoke(app, "train", EXPERIMENTS / "tiny/msclip.yaml", "--out", tmp_path / "run", "--set", "model.policy=share-nothing")
    assert_user_error(result, "share-nothing")
    assert not (tmp_path / "run").exists()


def test_real_data_recipe_needs_a_path(app, tmp_path):
    result = invoke(app, "train", EXPERIMENTS / "b32/msclip.yaml", "--out", tmp_path / "run")
    assert_user_error(result, "data.path is required")
    assert not (tmp_path / "run").exists()


def test_train_then_eval(app, tmp_path):
    run = tmp_path / "run"
    result = invoke(app, "train", EXPERIMENTS / "tiny/msclip.yaml", "--out", run, *FAST)
    assert result.exit_code == 0, result.output
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    records = read_metrics(run)
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2]
    train_keys = {"train/loss", "train/lr", "train/logit_scale", "train/skipped", "train/samples_per_s", "train/grad_norm"}
    assert train_keys <= set(records[0]) and records[0]["epoch"] > 0
    final = records[-1]
    assert final["step"] == 2 and "zeroshot/shapes/top1" in final and "retrieval/shapes/t2i_r1" in final

    result = invoke(app, "eval", run, "--set", "train.progress=false")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "eval.json").read_text())
    assert saved["step"] == 2 and saved["checkpoint"] == "step_00000002"
    for key in ("zeroshot/shapes/top1", "retrieval/shapes/i2t_r1", "nmi/mean"):
        assert saved["metrics"][key] == pytest.approx(final[key], abs=1e-6)

    assert_user_error(invoke(app, "train", EXPERIMENTS / "tiny/msclip.yaml", "--out", run, *FAST), "already holds a run")


def test_eval_needs_a_run_dir(app, tmp_path):
    assert_user_error(invoke(app, "eval", tmp_path), "not a run directory")
