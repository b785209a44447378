"""`sharenas report`: a typer callback over `nas.report`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit


def report(
    source: Optional[Path] = typer.Argument(None, help="A training or Gumbel search run, a bench table .json, or nothing with --storage/--study."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write (self-contained, works offline)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL of a study (its figures also go to optuna-dashboard)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (with --storage)."),
) -> None:
    """Write a self-contained plotly HTML report: Pareto front, sharing heatmaps, gates, NMI, history, table vs msclip."""
    from trainer.run import USER_ERRORS

    from nas.discrete.storage import StorageError
    from nas.report import write_report

    try:
        written = write_report(source, out, storage, study)
    except (*USER_ERRORS, StorageError) as exc:
        raise error_exit(exc) from None
    typer.echo(f"report: {out} ({len(written.figures)} figures, {len(written.tables)} tables)")
