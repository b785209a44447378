"""`sharenas train` / `sharenas eval`: user errors exit 2 with one line, a run directory is complete."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nas.cli import train as run_commands
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


def test_resume_keeps_the_runs_own_config_and_refuses_changes_unless_asked(app, tmp_path):
    out = tmp_path / "run"
    config = EXPERIMENTS / "tiny" / "msclip.yaml"
    first = invoke(app, "train", config, *FAST, "--out", out)
    assert first.exit_code == 0, first.output
    # Resuming with the run alone continues it with its own config, overrides included.
    again = invoke(app, "train", "--resume", "--out", out)
    assert again.exit_code == 0, again.output
    assert read_metrics(out)[-1]["step"] == 2
    # The shipped config without the run's overrides differs: refused, listing the changed keys.
    refused = invoke(app, "train", config, "--out", out, "--resume")
    assert_user_error(refused, "differs from the run's own")
    assert "train.steps" in refused.output and "data.source" in refused.output
    # Applied only when asked, and recorded.
    longer = invoke(app, "train", "--resume", "--out", out, "--set", "train.steps=3", "--allow-changes")
    assert longer.exit_code == 0, longer.output
    assert read_metrics(out)[-1]["step"] == 3
    change = json.loads((out / "resume_changes.jsonl").read_text().splitlines()[-1])
    assert change["changes"]["train.steps"] == {"from": 2, "to": 3}
    assert_user_error(invoke(app, "train", "--resume", "--out", tmp_path / "nowhere"), "holds no run to resume")


def test_a_stale_eval_json_is_rewritten_when_a_resumed_run_goes_on(app, tmp_path):
    out = tmp_path / "run"
    assert invoke(app, "train", EXPERIMENTS / "tiny" / "msclip.yaml", *FAST, "--out", out).exit_code == 0
    assert invoke(app, "eval", out).exit_code == 0
    assert json.loads((out / "eval.json").read_text())["step"] == 2
    assert invoke(app, "train", "--resume", "--out", out, "--set", "train.steps=3", "--allow-changes").exit_code == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["step"] == 3
    assert record["metrics"]["zeroshot/shapes/top1"] == [r for r in read_metrics(out) if "zeroshot/shapes/top1" in r][-1]["zeroshot/shapes/top1"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "model.size=b33"], "model.size: unknown size 'b33'"),
        (["--set", "train.device=cuda"], "no CUDA device"),
    ],
)
def test_ordinary_mistakes_are_one_line_errors(app, tmp_path, args, needle):
    import torch

    if "train.device=cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_user_error(invoke(app, "train", EXPERIMENTS / "tiny" / "msclip.yaml", *FAST, *args, "--out", tmp_path / "run"), needle)


def test_eval_of_a_search_run_says_what_to_do(app, tmp_path):
    (tmp_path / "config.yaml").write_text("space: {size: tiny}\n")
    (tmp_path / "gates.json").write_text("{}")
    assert_user_error(invoke(app, "eval", tmp_path), "is a Gumbel search run")


def test_default_run_directories_of_same_named_configs_do_not_collide():
    from trainer.run import default_run_dir

    assert default_run_dir(EXPERIMENTS / "tiny" / "msclip.yaml") != default_run_dir(EXPERIMENTS / "b32" / "msclip.yaml")
    assert default_run_dir(EXPERIMENTS / "tiny" / "msclip.yaml") == Path("runs") / "tiny-msclip"


def test_version_and_dashboard_errors():
    from nas.cli import app as sharenas
    from nas.discrete.storage import normalize_url

    result = CliRunner().invoke(sharenas, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("sharenas ")
    bad = CliRunner().invoke(sharenas, ["dashboard", "--storage", "sqlite:///does/not/exist.db"])
    assert_user_error(bad, "does not exist")  # one line, and no banner announcing a server
    assert normalize_url("runs/x/study.db").startswith("sqlite:///") and normalize_url("runs/x/study.db").endswith("runs/x/study.db")
