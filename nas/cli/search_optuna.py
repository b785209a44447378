"""`sharenas search optuna`: a typer callback over `nas.discrete.search`. Bad input prints one line and
exits with code 2."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nas.cli.console import error_exit

if TYPE_CHECKING:
    from nas.discrete.search import OptunaSearchResult


def optuna_search(
    config: Path = typer.Argument(..., help="Search config (YAML), e.g. experiments/tiny/optuna.yaml."),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="sqlite:///FILE, postgresql+psycopg2://USER@HOST:PORT/DB or journal:FILE (default: the config's storage, else SQLite in its out_dir)."
    ),
    study: Optional[str] = typer.Option(None, "--study", help="Study name; re-running with the same name resumes it."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="Trials the study should hold, baselines included."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. --set sampler.seed=1."),
) -> None:
    """Search sharing layouts with Optuna; start more workers with the same --storage and --study to parallelise."""
    from nas.discrete.config import load_search_config
    from nas.discrete.search import run_search
    from trainer.run import USER_ERRORS

    try:
        cfg = load_search_config(config, overrides or [])
        result = run_search(cfg, storage=storage, study_name=study, n_trials=n_trials)
    except USER_ERRORS as exc:
        raise error_exit(exc) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: the running trial is marked FAIL and runs again when you re-run this command", err=True)
        raise typer.Exit(130) from None
    _print_result(result)


def _print_result(result: OptunaSearchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    t = result.table
    table = Table(title=f"{result.study_name}: {t.metric} vs msclip")
    for name in ("trial", "policy", "baseline", t.metric, "Δ", "params", "Δ params"):
        table.add_column(name, justify="left" if name in ("policy", "baseline") else "right")
    for r in t.rows:
        table.add_row(
            str(r.trial), r.policy + (" ★" if r.best else ""), r.baseline or "", f"{r.metric:.2f}",
            "" if r.delta_metric is None else f"{r.delta_metric:+.2f}",
            f"{r.params_total / 1e6:.3f}M", "" if r.delta_params is None else f"{r.delta_params / 1e6:+.3f}M",
        )
    console = Console()
    console.print(table)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items()))
    console.print(f"{states}; {result.seconds:.0f} s. Results: {result.out_dir / 'results.md'} (and .csv); "
                  f"storage {result.storage}", highlight=False)
