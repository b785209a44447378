"""`sharenas search sweep`: a typer callback over `nas.supernet.sweep`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit, search_user_errors


def sweep(
    run: Path = typer.Argument(..., help="A finished Gumbel search run directory (one supernet)."),
    budgets: int = typer.Option(8, "--budgets", help="Budgets from the all-shared to the all-specific size."),
    reference: Optional[str] = typer.Option(None, "--reference", metavar="LOSS,PARAMS",
                                            help="Hypervolume reference point, e.g. 4.852,8771586 (chance loss, 2 x clip-t768)."),
) -> None:
    """Derive a policy at each parameter budget from one trained supernet; writes RUN/sweep.json."""
    from trainer.typed_config import ConfigError

    from nas.scoring import ARCH_VAL_LOSS
    from nas.supernet.sweep import SWEEP_FILE, run_sweep

    try:
        point = None
        if reference is not None:
            try:
                loss, params = (float(x) for x in reference.split(","))
            except ValueError:
                raise ConfigError(f"--reference {reference!r}: give LOSS,PARAMS, e.g. 4.852,8771586") from None
            point = (loss, params)
        record = run_sweep(run, budgets, point)
    except search_user_errors() as exc:
        raise error_exit(exc, 2) from None
    for b in record.budgets:
        typer.echo(f"budget {b.budget:>11,}: {b.policy:<10} {b.params:>11,} params")
    for p in record.policies:
        typer.echo(f"{p.policy:<10} {p.params:>11,} params  inherited {ARCH_VAL_LOSS} {p.arch_val_loss:.4f}{'  (front)' if p.on_front else ''}")
    hv = record.hypervolume
    typer.echo(f"hypervolume {'not computed (--reference)' if hv is None else f'{hv:.6g}'}; sweep {record.sweep_seconds:.0f} s -> {run / SWEEP_FILE}")
