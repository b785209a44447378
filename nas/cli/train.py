"""`sharenas train` and `sharenas eval`: typer callbacks over `trainer.run`.

Errors in user input print one line and exit with code 2; a diverged run exits with code 1.
Under torchrun every process runs the same command (`torchrun --nproc_per_node N $(which sharenas)
train CONFIG.yaml`).
"""
from __future__ import annotations

from pathlib import Path

import typer

from nas.cli.console import error_exit


def train(
    config: Path | None = typer.Argument(None, help="Training config (YAML), e.g. experiments/tiny/msclip.yaml; optional with --resume."),
    overrides: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. --set train.epochs=3."),
    out: Path | None = typer.Option(None, "--out", help="Run directory [default: runs/<config folder>-<config stem>]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint, with the run's own config."),
    allow_changes: bool = typer.Option(False, "--allow-changes", help="With --resume: apply a config or --set that differs from the run's own (recorded)."),
) -> None:
    """Train a model; the run directory gets config.yaml, metrics.jsonl and checkpoints/."""
    from trainer.loop import TrainingDiverged
    from trainer.run import USER_ERRORS, run_training

    try:
        result = run_training(config, overrides or [], out, resume, allow_changes)
    except USER_ERRORS as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    if result.metrics:
        _print_metrics(result.metrics, result.chance, f"step {result.step}: {result.run_dir}")


def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `sharenas train`."),
    overrides: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a value of the run's config (repeatable)."),
) -> None:
    """Evaluate a run's latest checkpoint (retrieval, zero-shot, linear probe, NMI); writes RUN_DIR/eval.json."""
    from trainer.run import USER_ERRORS, run_evaluation

    try:
        metrics, chance = run_evaluation(run_dir, overrides or [])
    except USER_ERRORS as exc:
        raise error_exit(exc, 2) from None
    _print_metrics(metrics, chance, str(run_dir))


def _print_metrics(metrics: dict[str, float], chance: dict[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from trainer.evaluation.chance import unit_of

    table = Table(title=title)
    for column in ("metric", "value", "unit", "chance"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, value in metrics.items():
        unit = unit_of(key)
        digits = 1 if unit == "%" else 3
        table.add_row(key, f"{value:.{digits}f}", unit, f"{chance[key]:.{digits}f}" if key in chance else "-")
    Console().print(table)
