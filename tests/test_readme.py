"""Every command of the README and of docs/clusters.md is run, shortened where a full run takes long, or
covered by a test that must pass in the same session (or a CI step): an edit of either that is not
reflected here fails, so they cannot drift. Code blocks with a language (`sh`, `json`, `python`) are
examples for other machines or formats, not commands run here."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.realset_fixtures import RULES, glyph, write_packages
from tests.test_data import _write_shards
from trainer.data.realset.build import build_realset

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/clusters.md")
BIN = Path(sys.executable).parent

TRAIN = "--set train.epochs=null --set train.steps=4 --set eval.every_epochs=null --set eval.nmi_pairs=0"
GUMBEL = "--set train.epochs=null --set train.steps=4 --set search.warmup_epochs=0 --set derive.samples=1 --set search.diagnostics_batch=8"
OPTUNA = ("--set train.train.epochs=null --set train.train.steps=3 --set train.eval.every_epochs=null --set train.eval.every_steps=3 "
          "--set train.data.heldout_shapes=256 --set train.eval.nmi_pairs=0")

# README command -> the shortened command run here (in README order: later ones use earlier outputs),
# or ("covered", where) for commands another test or the CI script runs.
COMMANDS: dict[str, str | tuple[str, str]] = {
    "make demo": ("covered", ".ci/run runs make demo after make test"),
    "make test": ("covered", ".ci/run"),
    ".venv/bin/sharenas presets": ".venv/bin/sharenas presets",
    ".venv/bin/sharenas params msclip --size b32": ".venv/bin/sharenas params msclip --size b32",
    ".venv/bin/sharenas params experiments/policies/example.json --json": ".venv/bin/sharenas params experiments/policies/example.json --json",
    ".venv/bin/sharenas params experiments/policies/example.json --size tiny": ".venv/bin/sharenas params experiments/policies/example.json --size tiny",
    ".venv/bin/sharenas train experiments/tiny/msclip.yaml --out runs/msclip": f".venv/bin/sharenas train experiments/tiny/msclip.yaml --out runs/msclip {TRAIN}",
    ".venv/bin/sharenas train experiments/tiny/msclip.yaml --set train.epochs=2 --out runs/short":
        f".venv/bin/sharenas train experiments/tiny/msclip.yaml --out runs/short {TRAIN.replace('train.steps=4', 'train.steps=2')}",
    ".venv/bin/sharenas train --resume --out runs/msclip": ".venv/bin/sharenas train --resume --out runs/msclip",
    ".venv/bin/sharenas eval runs/msclip": ".venv/bin/sharenas eval runs/msclip",
    ".venv/bin/torchrun --nproc_per_node 8 -m trainer.run experiments/b32/msclip.yaml --set data.source=webdataset --set 'data.path=shards/{000..099}.tar'":
        ".venv/bin/torchrun --nproc_per_node 2 -m trainer.run experiments/tiny/msclip.yaml --set data.source=webdataset "
        "--set 'data.path=shards/shard-{000..002}.tar' --set train.batch_size=4 --out runs/ddp " + TRAIN.replace("train.steps=4", "train.steps=2"),
    ".venv/bin/sharenas search gumbel experiments/tiny/gumbel.yaml --out runs/gumbel": f".venv/bin/sharenas search gumbel experiments/tiny/gumbel.yaml --out runs/gumbel {GUMBEL}",
    ".venv/bin/sharenas search gumbel --resume --out runs/gumbel": ".venv/bin/sharenas search gumbel --resume --out runs/gumbel",
    ".venv/bin/sharenas params runs/gumbel/arch.json": ".venv/bin/sharenas params runs/gumbel/arch.json",
    ".venv/bin/sharenas search conflict experiments/tiny/conflict.yaml --out runs/conflict":
        ".venv/bin/sharenas search conflict experiments/tiny/conflict.yaml --out runs/conflict --set train.epochs=null --set train.steps=3 --set conflict.batches=1",
    ".venv/bin/sharenas search rank-check experiments/tiny/rank_check.yaml --out runs/rank-check":
        ("covered", "tests/test_rank_check.py::test_rank_check_searches_and_scores_a_supernet"),
    ".venv/bin/sharenas search optuna experiments/tiny/optuna.yaml --n-trials 6": f".venv/bin/sharenas search optuna experiments/tiny/optuna.yaml --n-trials 3 {OPTUNA}",
    ".venv/bin/sharenas dashboard --storage sqlite:///runs/optuna/tiny-optuna/study.db":
        ("covered", "tests/test_optuna_dashboard.py::test_dashboard_serves_the_study_note_and_artifacts_on_localhost"),
    ".venv/bin/sharenas tune experiments/tiny/tune.yaml": ("covered", "tests/test_tune.py::test_asha_stops_trials_early_and_the_study_says_so"),
    ".venv/bin/sharenas tune experiments/tiny/tune.yaml --resume":
        ("covered", "tests/test_tune.py::test_tune_retries_a_failed_trial_from_its_checkpoint_and_resumes_after_the_driver_is_killed"),
    'eval "$(scripts/ray_cluster.sh start /tmp/sharenas-ray)"': ("covered", "tests/test_tune.py::test_job_submission_to_a_token_authenticated_head"),
    'RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$SHARENAS_RAY_TOKEN_PATH .venv/bin/ray job submit --address "$SHARENAS_RAY_DASHBOARD" '
    "--working-dir . -- sharenas tune experiments/tiny/tune.yaml --address auto":
        ("covered", "tests/test_tune.py::test_job_submission_to_a_token_authenticated_head"),
    "scripts/ray_cluster.sh stop /tmp/sharenas-ray": ("covered", "tests/test_tune.py::test_job_submission_to_a_token_authenticated_head"),
    'eval "$(scripts/ray_cluster.sh start /tmp/sharenas-ray --multi-node --num-cpus 1)"':
        ("covered", "tests/test_ray_cluster.py::test_a_worker_node_joins_and_the_ports_of_both_nodes_are_as_documented_and_stop_leaves_nothing"),
    "scripts/ray_cluster.sh join /tmp/sharenas-ray --num-cpus 1":
        ("covered", "tests/test_ray_cluster.py::test_a_worker_node_joins_and_the_ports_of_both_nodes_are_as_documented_and_stop_leaves_nothing"),
    'RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$SHARENAS_RAY_TOKEN_PATH .venv/bin/sharenas tune experiments/tiny/tune.yaml '
    '--address "$SHARENAS_RAY_ADDRESS" --set num_samples=2':
        ("covered", "tests/test_ray_cluster_integration.py::"
                    "test_two_nodes_run_two_trials_at_once_and_a_killed_node_s_trial_is_retried_on_the_other_from_its_checkpoint"),
    "OMP_NUM_THREADS=1 .venv/bin/sharenas search optuna experiments/tiny/pareto.yaml":
        f".venv/bin/sharenas search optuna experiments/tiny/pareto.yaml --n-trials 3 {OPTUNA} --set objective.latency.steps=2 --set objective.latency.warmup=0",
    "OMP_NUM_THREADS=1 .venv/bin/sharenas search gumbel experiments/tiny/gumbel-sweep.yaml --out runs/gumbel-sweep":
        f".venv/bin/sharenas search gumbel experiments/tiny/gumbel-sweep.yaml --out runs/gumbel-sweep {GUMBEL}",
    "OMP_NUM_THREADS=1 .venv/bin/sharenas search sweep runs/gumbel-sweep --budgets 8 --reference 4.852030263919619,8771586":
        ".venv/bin/sharenas search sweep runs/gumbel-sweep --budgets 8 --reference 4.852030263919619,8771586",
    ".venv/bin/sharenas bench front experiments/results/sharebench-tiny.json --out runs/fronts.json "
    "--judge optuna=runs/optuna/tiny-pareto/pareto.json --judge sweep=runs/gumbel-sweep/sweep.json "
    "--scores experiments/results/front-policies-tiny.json --write-missing runs/front-policies":
        ".venv/bin/sharenas bench front experiments/results/sharebench-tiny.json --out runs/fronts.json "
        "--judge optuna=runs/optuna/tiny-pareto/pareto.json --judge sweep=runs/gumbel-sweep/sweep.json "
        "--scores experiments/results/front-policies-tiny.json --write-missing runs/front-policies",
    ".venv/bin/sharenas report --storage sqlite:///runs/optuna/tiny-pareto/study.db --study tiny-pareto --out front.html":
        ".venv/bin/sharenas report --storage sqlite:///runs/optuna/tiny-pareto/study.db --study tiny-pareto --out front.html",
    ".venv/bin/sharenas export --storage sqlite:///runs/optuna/tiny-pareto/study.db --study tiny-pareto --trial 0 --out exports/front-0":
        ".venv/bin/sharenas export --storage sqlite:///runs/optuna/tiny-pareto/study.db --study tiny-pareto --trial 0 --out exports/front-0",
    ".venv/bin/sharenas bench build experiments/bench/sharebench-tiny.yaml --out runs/sharebench-tiny --workers 2":
        ("covered", "tests/test_bench.py::test_build_skips_finished_entries_and_resumes_a_half_trained_one"),
    ".venv/bin/sharenas bench show runs/sharebench-tiny": ("covered", "tests/test_bench.py::test_build_skips_finished_entries_and_resumes_a_half_trained_one"),
    ".venv/bin/sharenas bench show experiments/results/sharebench-tiny.json --json":
        ".venv/bin/sharenas bench show experiments/results/sharebench-tiny.json --json --bootstrap 200",
    "scripts/sharebench.sh": ("covered", "the bench and rank-check tests run each command it chains; the script itself takes hours"),
    "scripts/realdata.sh build data/real": ("covered", "tests/test_realset.py::test_the_script_builds_and_checks_a_set"),
    ".venv/bin/sharenas data check data/real": ".venv/bin/sharenas data check data/real",
    ".venv/bin/sharenas train experiments/real/msclip.yaml --out runs/real-msclip":
        f".venv/bin/sharenas train experiments/real/msclip.yaml --out runs/real-msclip {TRAIN} --set train.batch_size=8",
    ".venv/bin/sharenas search gumbel experiments/real/gumbel.yaml --out runs/gumbel-real":
        f".venv/bin/sharenas search gumbel experiments/real/gumbel.yaml --out runs/gumbel-real {GUMBEL} --set train.batch_size=8 "
        "--set search.arch_batch_size=4 --set derive.batch_size=8",
    ".venv/bin/sharenas bench show experiments/results/sharebench-real-tiny.json":
        ".venv/bin/sharenas bench show experiments/results/sharebench-real-tiny.json --bootstrap 200",
    ".venv/bin/sharenas export runs/gumbel --out exports/gumbel": ".venv/bin/sharenas export runs/gumbel --out exports/gumbel",
    ".venv/bin/sharenas export runs/msclip --out exports/msclip --onnx": ".venv/bin/sharenas export runs/msclip --out exports/msclip --onnx",
    ".venv/bin/sharenas export --storage sqlite:///runs/optuna/tiny-optuna/study.db --study tiny-optuna --out exports/best":
        ".venv/bin/sharenas export --storage sqlite:///runs/optuna/tiny-optuna/study.db --study tiny-optuna --out exports/best",
    ".venv/bin/sharenas report runs/gumbel --out gumbel.html": ".venv/bin/sharenas report runs/gumbel --out gumbel.html",
    ".venv/bin/sharenas report --storage sqlite:///runs/optuna/tiny-optuna/study.db --study tiny-optuna --out study.html":
        ".venv/bin/sharenas report --storage sqlite:///runs/optuna/tiny-optuna/study.db --study tiny-optuna --out study.html",
    ".venv/bin/sharenas report experiments/results/sharebench-tiny.json --out bench.html": ".venv/bin/sharenas report experiments/results/sharebench-tiny.json --out bench.html",
}


def readme_commands() -> list[str]:
    """The shell commands of the documents' plain code blocks (comments stripped, continuations joined)."""
    text = "\n".join((ROOT / name).read_text() for name in DOCUMENTS)
    commands = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang:
            continue
        for line in re.sub(r"\\\n\s*", "", body).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


def test_every_readme_command_is_run_or_covered():
    commands = readme_commands()
    assert [c for c in commands if c not in COMMANDS] == [], "a README command this test does not know: add it to COMMANDS"
    assert [c for c in COMMANDS if c not in commands] == [], "COMMANDS lists a command the README no longer has"


def covered_by(where: str) -> list[str]:
    return [readme for readme, how in COMMANDS.items() if how == ("covered", where)]


@pytest.mark.after_others
@pytest.mark.parametrize("where", sorted({how[1] for how in COMMANDS.values() if isinstance(how, tuple) and "::" in how[1]}))
def test_the_covering_test_ran_and_passed(where, session_outcomes):
    """A README command counts as covered only when its covering test passed in this session; when that
    test was skipped, deselected or not collected, this test is skipped with the reason."""
    commands = "; ".join(covered_by(where))
    path, name = where.split("::")
    assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"{path} has no test {name}, which covers: {commands}"
    ids = [test_id for test_id in session_outcomes.collected if test_id == where or test_id.startswith(f"{where}[")]
    if not ids:
        pytest.skip(f"{where} was not collected in this session (run the whole suite, as make test does), so these "
                    f"README commands are unchecked: {commands}")
    for test_id in ids:
        if test_id in session_outcomes.deselected:
            markers = ", ".join(session_outcomes.deselected[test_id]) or "none"
            pytest.skip(f"{test_id} was deselected by -m, -k or --deselect (its markers: {markers}), so these README commands are unchecked: {commands}")
        status, detail = session_outcomes.results.get(test_id, ("not run", ""))
        if status == "skipped":
            pytest.skip(f"{test_id} was skipped ({detail}), so these README commands are unchecked: {commands}")
        assert status == "passed", f"{test_id} {status} {detail}: these README commands are not shown to work: {commands}"


def test_the_ci_script_runs_what_it_covers():
    steps = (ROOT / ".ci" / "run").read_text().splitlines()
    for readme, how in COMMANDS.items():
        if isinstance(how, tuple) and how[1].startswith(".ci/run"):
            assert readme in steps, f"{readme!r} is named as run by .ci/run, which does not run it"


def test_the_readme_commands_run_in_order(tmp_path):
    for folder in ("experiments", "scripts"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "shards").mkdir()
    _write_shards(tmp_path / "shards")
    build_realset(tmp_path / "data" / "real", write_packages(tmp_path / "packages"), RULES, workers=1, glyphs=glyph)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for readme, how in COMMANDS.items():
        if isinstance(how, tuple):
            continue
        command = how.replace(".venv/bin/", f"{BIN}/")
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{readme}\n  ran as: {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if "example.json --size tiny" in readme:
            assert "4,060,313" in done.stdout
    assert (tmp_path / "exports" / "msclip" / "image_encoder.onnx").is_file() or any((tmp_path / "exports" / "msclip").glob("*.onnx"))
    assert (tmp_path / "gumbel.html").stat().st_size > 10_000 and (tmp_path / "runs" / "conflict" / "policy.json").is_file()
