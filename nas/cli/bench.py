"""`sharenas bench build` and `sharenas bench show`: typer callbacks over `nas.bench`."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from nas.cli.console import error_exit


def json_safe(value: Any) -> Any:
    """NaN and inf become null, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def build(
    config: Path = typer.Argument(..., help="Bench config (YAML), e.g. experiments/bench/sharebench-tiny.yaml."),
    out: Path = typer.Option(..., "--out", help="Bench directory; rerun the same command to resume."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, one CPU thread each."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a bench config value (repeatable)."),
) -> None:
    """Train every (policy, seed) entry of a bench standalone; resumable."""
    from search_spaces import PolicyError
    from trainer.run import USER_ERRORS

    from nas.bench.build import build_bench

    try:
        failed = build_bench(config, out, workers, overrides or [])
    except (*USER_ERRORS, PolicyError, RuntimeError) as exc:
        raise error_exit(exc, 2 if not isinstance(exc, RuntimeError) else 1) from None
    if failed:
        raise error_exit(f"{len(failed)} entries failed ({', '.join(e.key for e in failed)}); the others are kept, rerun to retry", 1)
    typer.echo(f"bench complete: sharenas bench show {out}")


def load_table(source: Path, bootstrap: int) -> dict[str, Any]:
    """A bench table from a bench directory (computed) or from its committed JSON."""
    from nas.bench.table import bench_table, load_paper_results

    if source.suffix == ".json":
        try:
            return json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the bench table {source}: {exc}") from None
    return bench_table(source, bootstrap, load_paper_results())


def show(
    source: Path = typer.Argument(..., help="A bench directory (the --out of `bench build`) or its JSON table."),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable table."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the markdown rendering to this file."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="Bootstrap resamples for the confidence intervals."),
) -> None:
    """The bench table (mean +- std per policy) and its noise ceiling (seed-to-seed Kendall tau / Spearman, CIs)."""
    from nas.bench.render import bench_markdown, ceiling_frame, policy_frame

    try:
        table = json_safe(load_table(source, bootstrap))
    except (OSError, ValueError) as exc:
        raise error_exit(exc) from None
    if markdown is not None:
        import yaml

        name = (yaml.safe_load(table.get("config") or "") or {}).get("name", source.stem)
        title = {"sharebench-tiny": "ShareBench-tiny", "sharebench-tiny-short": "ShareBench-tiny short trials"}.get(name, name)
        from trainer import atomic

        atomic.write_text(markdown, bench_markdown(table, title, f"scripts/sharebench.sh (bench build, then sharenas bench show {source} --json --markdown {markdown})"))
    if as_json:
        typer.echo(json.dumps(table, indent=2))
        return
    typer.echo(policy_frame(table).to_string(index=False))
    typer.echo("")
    typer.echo(ceiling_frame(table).to_string(index=False))
