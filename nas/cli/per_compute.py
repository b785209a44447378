"""`sharenas search per-compute`: a typer callback over `nas.ranking.per_compute`. Errors in user input
print one line and exit with code 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit, json_safe, search_user_errors


def per_compute(
    config: Path = typer.Argument(..., help="Per-compute config (YAML), e.g. experiments/tiny/per_compute.yaml."),
    out: Path = typer.Option(..., "--out", help="Output directory: the timed standalone run, the searches it runs and what they measured (resumable)."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a per-compute config value (repeatable); a trainer key (train.epochs=2) is set in every config it trains with."),
    analyse_only: bool = typer.Option(False, "--analyse-only", help="Run nothing: compute the curves from what OUT already measured."),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable result."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the markdown rendering to this file."),
) -> None:
    """Every strategy's anytime regret against the bench, per budget in standalone runs of its recipe."""
    from trainer.loop import TrainingDiverged

    from nas.ranking.compute_runs import MEASURED_FILE, Measured, measure
    from nas.ranking.per_compute import per_compute as study

    try:
        measured = Measured.load(out / MEASURED_FILE) if analyse_only else measure(config, out, overrides or [])
        result = json_safe(study(config, measured, overrides or []))
    except search_user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    if markdown is not None:
        from trainer import atomic

        from nas.ranking.per_compute_render import per_compute_markdown

        where = "".join(f" --set {o}" for o in overrides or [])
        flag = " --analyse-only" if analyse_only else ""
        atomic.write_text(markdown, per_compute_markdown(result, f"sharenas search per-compute {config} --out {out}{flag}{where} --json --markdown {markdown}"))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from nas.ranking.per_compute_render import curves_frame

    typer.echo(curves_frame(result, "regret").to_string(index=False))
