"""`sharenas search rank-check`: a typer callback over `nas.ranking.rank_check`. Errors in user input
print one line and exit with code 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nas.cli.console import error_exit, json_safe, search_user_errors

if TYPE_CHECKING:
    from nas.ranking.rank_record import RankCheckRecord


def rank_check(
    config: Path = typer.Argument(..., help="Rank-check config (YAML), e.g. experiments/tiny/rank_check.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory [default: runs/<config folder>-<config stem>]; holds the supernet it searches."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a rank-check config value (repeatable); train.epochs=2 (any trainer key) is set in every search it runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable result."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the markdown rendering to this file."),
) -> None:
    """Score proxies (the supernet's inherited weights, parameter count, specific sublayers) against the bench's ground truth."""
    from trainer.loop import TrainingDiverged
    from trainer.run import default_run_dir

    from nas.ranking.rank_check import run_rank_check
    from nas.ranking.rank_record import RankCheckRecord

    try:
        record = run_rank_check(config, out if out is not None else default_run_dir(config), overrides or [])
    except search_user_errors() as exc:
        raise error_exit(exc, 2) from None
    except TrainingDiverged as exc:
        raise error_exit(exc, 1) from None
    data = json_safe(record.to_json())
    result = RankCheckRecord.from_json(data)
    if markdown is not None:
        from trainer import atomic

        from nas.bench.record import BenchRecord
        from nas.ranking.render import rank_check_markdown

        where = (f" --out {out}" if out is not None else "") + "".join(f" --set {o}" for o in overrides or [])
        bench_name = BenchRecord.load(result.bench).name or "sharebench-tiny"
        atomic.write_text(markdown, rank_check_markdown(result, f"sharenas search rank-check {config}{where} --json --markdown {markdown}", bench_name))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_rank_check(result)


def _print_rank_check(result: RankCheckRecord) -> None:
    from nas.ranking.render import rank_check_frame

    typer.echo(f"rank check against {result.bench} ({result.n} policies; truth: {result.truth})")
    typer.echo(rank_check_frame(result).to_string(index=False))
    if result.skipped_outside_space:
        typer.echo(f"outside the search space, not scored: {', '.join(result.skipped_outside_space)}")
