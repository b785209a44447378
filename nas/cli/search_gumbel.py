"""`sharenas search gumbel`: a typer callback over `nas.supernet.search`. Errors in user input print
one line and exit with code 2."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nas.cli.console import error_exit, search_user_errors

if TYPE_CHECKING:
    from search_spaces import ArchRecord


def gumbel(
    config: Optional[Path] = typer.Argument(None, help="Search config (YAML), e.g. experiments/tiny/gumbel.yaml; optional with --resume."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory [default: runs/<config folder>-<config stem>]."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. --set search.budget=3.9M."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the derived policy from scratch afterwards (into OUT/retrain)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search in --out from its last saved state, with its own config."),
    allow_changes: bool = typer.Option(False, "--allow-changes", help="With --resume: apply a config that differs from the run's own."),
) -> None:
    """Gumbel-softmax supernet search over shared/specific per layer and sublayer; writes OUT/arch.json and OUT/policy.json."""
    from trainer.loop import TrainingDiverged
    from trainer.run import default_run_dir, resolve_resume
    from trainer.typed_config import ConfigError, load_config

    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search

    try:
        if config is None and not (resume and out is not None):
            raise ConfigError("give a CONFIG.yaml (or --resume --out RUN to continue a search)")
        run_dir = out if out is not None else default_run_dir(config)
        if resume:
            cfg = resolve_resume(run_dir, config, overrides or [], allow_changes, GumbelConfig)
        else:
            cfg = load_config(config, GumbelConfig, overrides or [])
        result = run_gumbel_search(cfg, run_dir, retrain=True if retrain else None, resume=resume)
    except search_user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    if result.arch is not None:
        _print_arch(result.arch, result.run_dir, result.seconds)


def _print_arch(arch: ArchRecord, run_dir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from nas.scoring import ARCH_VAL_LOSS

    table = Table(title=f"gumbel search: {run_dir} ({seconds:.0f} s); selected {arch.provenance['selected']} (inherited weights)")
    columns = ("candidate", "params", "arch-split loss (nats)", "zero-shot top-1 %, mean over the zero-shot tasks", "within budget")
    for column in columns:
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for c in arch.provenance["candidates"][:12]:
        zs = c.get("zeroshot")
        table.add_row(c["source"], f"{c['params']:,}", f"{c[ARCH_VAL_LOSS]:.3f}", "-" if zs is None else f"{zs:.1f}", "yes" if c["within_budget"] else "no")
    Console().print(table)
