"""`sharenas search gumbel` and `sharenas search rank-check`: typer callbacks over `nas.supernet.search`
and `nas.bench.rank_check`. Errors in user input print one line and exit with code 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit


def _user_errors() -> tuple[type[Exception], ...]:
    from nas.supernet.gates import ArchitectureDiverged
    from trainer.run import USER_ERRORS

    return (*USER_ERRORS, ArchitectureDiverged)


def gumbel(
    config: Optional[Path] = typer.Argument(None, help="Search config (YAML), e.g. experiments/tiny/gumbel.yaml; optional with --resume."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory [default: runs/<config folder>-<config stem>]."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. --set search.budget=3.9M."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the derived policy from scratch afterwards (into OUT/retrain)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search in --out from its last saved state, with its own config."),
    allow_changes: bool = typer.Option(False, "--allow-changes", help="With --resume: apply a config that differs from the run's own."),
) -> None:
    """Gumbel-softmax supernet search over shared/specific per layer and sublayer; writes OUT/arch.json and OUT/policy.json."""
    from trainer.typed_config import ConfigError, load_config
    from trainer.loop import TrainingDiverged
    from trainer.run import default_run_dir, resolve_resume

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
    except _user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    if result.arch:
        _print_arch(result.arch, result.run_dir, result.seconds)


def conflict(
    config: Path = typer.Argument(..., help="Conflict-search config (YAML), e.g. experiments/tiny/conflict.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory [default: runs/<config folder>-<config stem>]."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value (repeatable)."),
) -> None:
    """Train share-all briefly, then make the sublayers whose image/text gradients conflict most specific within the budget."""
    from rich.console import Console
    from rich.table import Table

    from trainer.typed_config import load_config
    from trainer.loop import TrainingDiverged
    from trainer.run import default_run_dir

    from nas.conflict.config import ConflictConfig
    from nas.conflict.search import run_conflict_search

    try:
        cfg = load_config(config, ConflictConfig, overrides or [])
        run_dir = out if out is not None else default_run_dir(config)
        record = run_conflict_search(cfg, run_dir)
    except _user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    p = record["provenance"]
    table = Table(title=f"conflict search: {run_dir} ({p['search_seconds']:.0f} s); policy {run_dir / 'policy.json'}, {record['params']['total']:,} parameters")
    table.add_column("sublayer (most conflicting first)")
    table.add_column("image/text gradient cosine", justify="right")
    table.add_column("made specific", justify="right")
    policy = record["policy"]["layers"]
    for name, cosine in p["most_conflicting"].items():
        layer, sub = name.split(".")
        table.add_row(name, f"{cosine:+.3f}", "yes" if policy[int(layer[1:])][sub] == "specific" else "no")
    Console().print(table)


def rank_check(
    config: Path = typer.Argument(..., help="Rank-check config (YAML), e.g. experiments/tiny/rank_check.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory [default: runs/<config folder>-<config stem>]; holds the supernet it searches."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a rank-check config value (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable result."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the markdown rendering to this file."),
) -> None:
    """Score proxies (the supernet's inherited weights, parameter count, specific sublayers) against the bench's ground truth."""
    from trainer.loop import TrainingDiverged

    from trainer.run import default_run_dir

    from nas.bench.rank_check import run_rank_check
    from nas.cli.bench import json_safe

    try:
        result = run_rank_check(config, out if out is not None else default_run_dir(config), overrides or [])
    except _user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    result = json_safe(result)
    if markdown is not None:
        from nas.bench.render import rank_check_markdown
        from trainer import atomic

        import yaml

        where = f" --out {out}" if out is not None else ""
        bench_name = (yaml.safe_load(json.loads(Path(result["bench"]).read_text()).get("config") or "") or {}).get("name", "sharebench-tiny")
        atomic.write_text(markdown, rank_check_markdown(result, f"sharenas search rank-check {config}{where} --json --markdown {markdown}", bench_name))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_rank_check(result)


def _print_arch(arch: dict, run_dir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gumbel search: {run_dir} ({seconds:.0f} s); selected {arch['provenance']['selected']} (inherited weights)")
    columns = ("candidate", "params", "arch-split loss (nats)", "zero-shot top-1 %, mean of shapes + digits", "within budget")
    for column in columns:
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for c in arch["provenance"]["candidates"][:12]:
        zs = c.get("zeroshot")
        table.add_row(c["source"], f"{c['params']:,}", f"{c['val_loss']:.3f}", "-" if zs is None else f"{zs:.1f}", "yes" if c["within_budget"] else "no")
    Console().print(table)


def _print_rank_check(result: dict) -> None:
    from nas.bench.render import rank_check_frame

    typer.echo(f"rank check against {result['bench']} ({result['n']} policies; truth: {result['truth']})")
    typer.echo(rank_check_frame(result).to_string(index=False))
    if result["skipped_outside_space"]:
        typer.echo(f"outside the search space, not scored: {', '.join(result['skipped_outside_space'])}")
