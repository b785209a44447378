"""`sharenas search gumbel` and `sharenas search rank-check`: typer callbacks over `nas.gumbel_search`
and `nas.rank_check`. Errors in user input print one line and exit with code 2."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.console import error_exit



def _user_errors() -> tuple[type[Exception], ...]:
    from nas.gumbel import ArchitectureDiverged
    from trainer.run import USER_ERRORS

    return (*USER_ERRORS, ArchitectureDiverged)


def gumbel(
    config: Path = typer.Argument(..., help="Search config (YAML), e.g. experiments/tiny/gumbel.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory [default: runs/<config stem>]."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. --set search.budget=3.9M."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the derived policy from scratch afterwards (into OUT/retrain)."),
) -> None:
    """Gumbel-softmax supernet search over shared/specific per layer and sublayer; writes OUT/arch.json and OUT/policy.json."""
    from trainer.config import load_config
    from trainer.loop import TrainingDiverged

    from nas.gumbel_config import GumbelConfig
    from nas.gumbel_search import run_gumbel_search

    try:
        cfg = load_config(config, GumbelConfig, overrides or [])
        result = run_gumbel_search(cfg, out if out is not None else Path("runs") / config.stem, retrain=True if retrain else None)
    except _user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    if result.arch:
        _print_arch(result.arch, result.run_dir, result.seconds)


def rank_check(
    config: Path = typer.Argument(..., help="Rank-check config (YAML), e.g. experiments/tiny/rank_check.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory [default: runs/<config stem>]; rerun to resume."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a rank-check config value (repeatable)."),
) -> None:
    """Train fixed policies standalone and compare their ranking with the supernet's (Kendall tau, Spearman rho, top-k)."""
    from trainer.loop import TrainingDiverged

    from nas.rank_check import run_rank_check

    try:
        result = run_rank_check(config, out if out is not None else Path("runs") / config.stem, overrides or [])
    except _user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    _print_rank_check(result)


def _print_arch(arch: dict, run_dir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gumbel search: {run_dir} ({seconds:.0f} s); selected {arch['provenance']['selected']}")
    for column in ("candidate", "params", "val_loss", "zeroshot", "within budget"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for c in arch["provenance"]["candidates"]:
        zs = c.get("zeroshot")
        table.add_row(c["source"], f"{c['params']:,}", f"{c['val_loss']:.4f}", "-" if zs is None else f"{zs:.2f}", "yes" if c["within_budget"] else "no")
    Console().print(table)


def _print_rank_check(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    metric = result["metric"]
    table = Table(title=f"rank check ({metric}; standalone vs supernet with inherited weights)")
    for column in ("policy", "params", f"standalone {metric}", f"supernet {metric}"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for name, r in sorted(result["policies"].items()):
        stand, sup = r.get("standalone", {}).get(metric), r.get("supernet", {}).get(metric)
        table.add_row(name, f"{r['params']:,}" if "params" in r else "-", "-" if stand is None else f"{stand:.4f}", "-" if sup is None else f"{sup:.4f}")
    Console().print(table)
    a = result.get("agreement")
    if a is None:
        Console().print("fewer than 3 policies finished: no agreement statistics yet")
        return
    k = next(key for key in a if key.endswith("_overlap"))
    Console().print(
        f"n={int(a['n'])}  Kendall tau {a['kendall_tau']:.3f} [{a['kendall_tau_ci_low']:.3f}, {a['kendall_tau_ci_high']:.3f}]  "
        f"Spearman rho {a['spearman_rho']:.3f} [{a['spearman_rho_ci_low']:.3f}, {a['spearman_rho_ci_high']:.3f}]  "
        f"{k} {a[k]:.2f} [{a[k + '_ci_low']:.2f}, {a[k + '_ci_high']:.2f}]"
    )
    if "derived_vs_msclip" in result:
        Console().print(f"derived vs msclip: {result['derived_vs_msclip']}")
