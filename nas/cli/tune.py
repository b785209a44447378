"""`sharenas tune`: typer callback over `nas.tune.driver`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit


def tune(
    config: Path = typer.Argument(..., help="Tune config (YAML), e.g. experiments/tiny/tune.yaml."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto (the one this job runs on) or ray://HOST:PORT [default: a local Ray with a token]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted experiment; finished trials are kept."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a tune config value (repeatable); train.epochs=2 (any trainer key) is set in every trial."),
) -> None:
    """Run a search on Ray Tune: OptunaSearch on the shared study, ASHA, retries from checkpoints."""
    from trainer.run import USER_ERRORS

    from nas.discrete.storage import StorageError
    from nas.tune.driver import run_tune

    try:
        result = run_tune(config, address, resume, overrides or [])
    except (*USER_ERRORS, StorageError) as exc:
        raise error_exit(exc) from None
    typer.echo(f"ray experiment: {result.experiment_path} ({len(result.frame)} trials)")
    if result.out_dir is not None:
        typer.echo(f"  results: {result.out_dir / 'results.md'}, {result.out_dir / 'ray_results.csv'}")
    if result.storage is not None:
        typer.echo(f"  study {result.study!r} in {result.storage} (watch: sharenas dashboard --storage {result.storage})")
