"""`sharenas search conflict`: a typer callback over `nas.conflict.search`. Errors in user input print
one line and exit with code 2."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit, search_user_errors


def conflict(
    config: Path = typer.Argument(..., help="Conflict-search config (YAML), e.g. experiments/tiny/conflict.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory [default: runs/<config folder>-<config stem>]."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable)."),
) -> None:
    """Train share-all briefly, then make the sublayers whose image/text gradients conflict most specific within the budget."""
    from rich.console import Console
    from rich.table import Table

    from trainer.loop import TrainingDiverged
    from trainer.run import default_run_dir
    from trainer.typed_config import load_config

    from nas.conflict.config import ConflictConfig
    from nas.conflict.search import run_conflict_search

    try:
        cfg = load_config(config, ConflictConfig, overrides or [])
        run_dir = out if out is not None else default_run_dir(config)
        record = run_conflict_search(cfg, run_dir)
    except search_user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    p = record.provenance
    table = Table(title=f"conflict search: {run_dir} ({p['search_seconds']:.0f} s); policy {run_dir / 'policy.json'}, {record.params.total:,} parameters")
    table.add_column("sublayer (most conflicting first)")
    table.add_column("image/text gradient cosine", justify="right")
    table.add_column("made specific", justify="right")
    layers = record.policy.layers
    for name, cosine in p["most_conflicting"].items():
        layer, sub = name.split(".")
        table.add_row(name, f"{cosine:+.3f}", "no" if layers[int(layer[1:])].is_shared(sub) else "yes")
    Console().print(table)
