"""Every command of the README and of the docs pages (docs/*.md) is run, shortened where a full run takes
long, or covered by a test that must pass in the same session (or a CI step, or a script CI runs): an
edit of either that is not reflected here fails, so they cannot drift."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.realset_fixtures import RULES, glyph, write_packages
from tests.test_csv_source import _csv_dataset
from tests.test_data import _write_shards
from trainer.data.realset.build import build_realset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TRAIN = "--set train.epochs=null --set train.steps=4 --set eval.every_epochs=null --set eval.nmi_pairs=0"
GUMBEL = "--set train.epochs=null --set train.steps=4 --set search.warmup_epochs=0 --set derive.samples=1 --set search.diagnostics_batch=8"
OPTUNA = ("--set train.epochs=null --set train.steps=3 --set eval.every_epochs=null --set eval.every_steps=3 "
          "--set data.heldout_shapes=256 --set eval.nmi_pairs=0")

# Documented command -> the shortened command run here (in this order: later ones use earlier outputs),
# or ("covered", where) for commands another test, the CI script or a script it runs runs.
COMMANDS: dict[str, str | tuple[str, str]] = {
    "make demo": ("covered", ".ci/run runs make demo after make test"),
    "make test": ("covered", ".ci/run"),
    "make test-integration": ("covered", ".ci/run"),
    "make docs": ("covered", ".ci/run"),
    "scripts/wheel_check.sh": ("covered", ".ci/run"),
    "pip install -e .": ("covered", "scripts/wheel_check.sh runs it with pip's resolver in a fresh venv that already has torch"),
    ".venv/bin/sharenas presets": ".venv/bin/sharenas presets",
    ".venv/bin/sharenas params msclip --size b32": ".venv/bin/sharenas params msclip --size b32",
    ".venv/bin/sharenas params experiments/policies/example.json --json": ".venv/bin/sharenas params experiments/policies/example.json --json",
    ".venv/bin/sharenas params experiments/policies/example.json --size tiny": ".venv/bin/sharenas params experiments/policies/example.json --size tiny",
    ".venv/bin/sharenas train experiments/tiny/msclip.yaml --out runs/msclip": f".venv/bin/sharenas train experiments/tiny/msclip.yaml --out runs/msclip {TRAIN}",
    ".venv/bin/sharenas train experiments/tiny/msclip.yaml --set train.epochs=2 --out runs/short":
        f".venv/bin/sharenas train experiments/tiny/msclip.yaml --out runs/short {TRAIN.replace('train.steps=4', 'train.steps=2')}",
    ".venv/bin/sharenas train --resume --out runs/msclip": ".venv/bin/sharenas train --resume --out runs/msclip",
    ".venv/bin/sharenas eval runs/msclip": ".venv/bin/sharenas eval runs/msclip",
    ".venv/bin/sharenas train experiments/tiny/msclip.yaml --set data.source=csv --set data.path=data/pairs.csv --out runs/csv":
        f".venv/bin/sharenas train experiments/tiny/msclip.yaml --set data.source=csv --set data.path=data/pairs.csv --out runs/csv {TRAIN} "
        "--set train.batch_size=4",
    ".venv/bin/sharenas train experiments/tiny/msclip.yaml --set data.source=webdataset --set 'data.path=shards/shard-{000..002}.tar' --out runs/shards":
        ".venv/bin/sharenas train experiments/tiny/msclip.yaml --set data.source=webdataset --set 'data.path=shards/shard-{000..002}.tar' "
        f"--out runs/shards {TRAIN} --set train.batch_size=4",
    ".venv/bin/torchrun --nproc_per_node 8 -m trainer.run experiments/b32/msclip.yaml --set data.source=webdataset --set 'data.path=shards/{000..099}.tar'":
        ".venv/bin/torchrun --nproc_per_node 2 -m trainer.run experiments/tiny/msclip.yaml --set data.source=webdataset "
        "--set 'data.path=shards/shard-{000..002}.tar' --set train.batch_size=4 --out runs/ddp " + TRAIN.replace("train.steps=4", "train.steps=2"),
    ".venv/bin/sharenas search gumbel experiments/tiny/gumbel.yaml --out runs/gumbel": f".venv/bin/sharenas search gumbel experiments/tiny/gumbel.yaml --out runs/gumbel {GUMBEL}",
    ".venv/bin/sharenas search gumbel --resume --out runs/gumbel": ".venv/bin/sharenas search gumbel --resume --out runs/gumbel",
    ".venv/bin/sharenas params runs/gumbel/arch.json": ".venv/bin/sharenas params runs/gumbel/arch.json",
    ".venv/bin/sharenas params runs/gumbel/arch.json --size b32": ".venv/bin/sharenas params runs/gumbel/arch.json --size b32",
    ".venv/bin/sharenas search conflict experiments/tiny/conflict.yaml --out runs/conflict":
        ".venv/bin/sharenas search conflict experiments/tiny/conflict.yaml --out runs/conflict --set train.epochs=null --set train.steps=3 --set conflict.batches=1",
    ".venv/bin/sharenas search rank-check experiments/tiny/rank_check.yaml --out runs/rank-check":
        ("covered", "tests/test_rank_check.py::test_rank_check_searches_and_scores_a_supernet"),
    ".venv/bin/sharenas search per-compute experiments/tiny/per_compute.yaml --out runs/per-compute-tiny":
        ("covered", "tests/test_per_compute.py::test_per_compute_measures_what_the_table_cannot_give_and_goes_on_where_it_stopped"),
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
    "scripts/sharebench.sh regime": ("covered", "tests/test_bench_lengths.py::test_the_regime_map_over_the_transformer_only_policies"),
    "scripts/sharebench.sh regime full-w64": ("covered", "tests/test_bench_lengths.py::test_the_regime_map_over_the_transformer_only_policies"),
    'eval "$(scripts/ray_cluster.sh start /tmp/sharenas-ray --multi-node --num-cpus 1)"':
        ("covered", "tests/test_ray_cluster.py::test_a_worker_node_joins_and_the_ports_of_both_nodes_are_as_documented_and_stop_leaves_nothing"),
    "scripts/ray_cluster.sh join /tmp/sharenas-ray --num-cpus 1":
        ("covered", "tests/test_ray_cluster.py::test_a_worker_node_joins_and_the_ports_of_both_nodes_are_as_documented_and_stop_leaves_nothing"),
    'RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$SHARENAS_RAY_TOKEN_PATH .venv/bin/sharenas tune experiments/tiny/tune.yaml '
    '--address "$SHARENAS_RAY_ADDRESS" --set num_samples=2':
        ("covered", "tests/test_ray_cluster_integration.py::"
                    "test_two_nodes_run_two_trials_at_once_and_a_killed_node_s_trial_is_retried_on_the_other_from_its_checkpoint"),
    "scripts/realdata.sh build data/real": ("covered", "tests/test_realset.py::test_the_script_builds_and_checks_a_set"),
    "scripts/realdata.sh build data/real-plus --sources clipart,emoji,tuxpaint,wesnoth":
        ("covered", "tests/test_realset.py::test_the_script_builds_the_added_sources"),
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


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
"""The README and the docs site's pages (the configuration reference is generated and holds no commands)."""


def documented_commands() -> dict[str, str]:
    """The shell commands of the plain code blocks of every page (comments stripped, continuations
    joined), each with the first page that shows it."""
    commands: dict[str, str] = {}
    for page in PAGES:
        for lang, body in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), re.S):
            if lang:
                continue
            for line in re.sub(r"\\\n\s*", "", body).splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line:
                    commands.setdefault(line, str(page.relative_to(ROOT)))
    return commands


def test_every_documented_command_is_run_or_covered():
    commands = documented_commands()
    unknown = [f"{page}: {c}" for c, page in commands.items() if c not in COMMANDS]
    assert unknown == [], "a command of the README or the docs that this test does not know: add it to COMMANDS"
    assert [c for c in COMMANDS if c not in commands] == [], "COMMANDS lists a command no page has any more"
    assert {"README.md", "docs/getting-started.md", "docs/data.md", "docs/search.md", "docs/clusters.md",
            "docs/sharebench.md", "docs/export.md", "docs/contributing.md"} <= set(commands.values())


def covered_by(where: str) -> list[str]:
    return [readme for readme, how in COMMANDS.items() if how == ("covered", where)]


@pytest.mark.after_others
@pytest.mark.parametrize("where", [pytest.param(where, marks=pytest.mark.covers(where))
                                   for where in sorted({how[1] for how in COMMANDS.values() if isinstance(how, tuple) and "::" in how[1]})])
def test_the_covering_test_ran_and_passed(where, session_outcomes):
    """A documented command counts as covered only when its covering test passed in this session; when that
    test was skipped, deselected or not collected, this test is skipped with the reason. It carries the
    covering test's `integration` marker (tests/conftest.py), so it runs in the same target."""
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


def test_the_scripts_run_what_they_cover():
    """A command covered by a script (which .ci/run runs) appears in that script."""
    steps = (ROOT / ".ci" / "run").read_text().splitlines()
    for readme, how in COMMANDS.items():
        if isinstance(how, tuple) and how[1].startswith("scripts/"):
            script = how[1].split()[0]
            assert script in steps, f"{script} covers {readme!r} but .ci/run does not run it"
            assert readme in (ROOT / script).read_text(), f"{script} is named as running {readme!r}, which it does not"


def test_the_readme_figure_is_committed_and_its_script_draws_it(tmp_path):
    """The README's figure is a committed PNG, and scripts/figure_front.py draws one of the same size
    from the committed results."""
    from PIL import Image

    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (ROOT / "README.md").read_text())
    assert images == ["docs/assets/front-real-tiny.png"]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "figure_front.py"), "--out", str(tmp_path / "front.png")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "front.png").size == Image.open(ROOT / images[0]).size


@pytest.mark.integration  # about 40 commands, each a new process (torchrun, Optuna studies, Gumbel searches): make test-integration
def test_the_readme_commands_run_in_order(tmp_path):
    for folder in ("experiments", "scripts"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "shards").mkdir()
    _write_shards(tmp_path / "shards")
    build_realset(tmp_path / "data" / "real", write_packages(tmp_path / "packages"), RULES, workers=1, glyphs=glyph)
    _csv_dataset(tmp_path / "data")
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
