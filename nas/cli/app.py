"""The `sharenas` command line (typer): one module per command group (`train.py`: train and eval;
`search_gumbel.py`, `search_conflict.py`, `search_optuna.py`, `rank_check.py`, `per_compute.py`: the `search` group;
`bench.py`, `data.py`, `tune.py`, `export.py`, `report.py`, `dashboard.py`, `demo.py`), shared helpers in
`console.py`. Commands import their heavy dependencies when they run."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from nas.cli import (
    bench as bench_commands, dashboard as dashboard_commands, data as data_commands, demo, export as export_commands, per_compute as per_compute_commands,
    rank_check as rank_check_commands, report as report_commands, search_conflict as conflict_commands,
    search_gumbel as gumbel_commands, search_optuna as optuna_commands, search_sweep as sweep_commands, train as run_commands,
    tune as tune_commands,
)
from nas.cli.console import error_exit

# Plain click help: typer's rich help panels print every flag (--version, --json, --help) as taking a `<bool>` value.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Search the sharing policy of modality-shared CLIP models.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sharenas {version('sharenas')}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Search the sharing policy of modality-shared CLIP models."""


@app.command()
def presets(
    sizes: list[str] = typer.Option(["b32", "b16", "small", "tiny"], "--size", help="Sizes to count (repeatable)."),
) -> None:
    """List the preset sharing policies with their parameter counts per size."""
    from tqdm import tqdm

    from search_spaces import PRESET_NAMES, PolicyError, count_params

    table = Table(title="sharenas presets (parameters)")
    table.add_column("preset")
    for size in sizes:
        table.add_column(size, justify="right")
    try:
        for name in tqdm(PRESET_NAMES, desc="counting", unit="preset", leave=False):
            table.add_row(name, *(_millions(count_params(name, size).total) for size in sizes))
    except (PolicyError, ValueError) as exc:
        raise error_exit(exc) from None
    Console().print(table)


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


@app.command()
def params(
    policy: str = typer.Argument(..., help="Preset name (see `sharenas presets`) or path to a policy .json"),
    size: Optional[str] = typer.Option(None, "--size", help="Model size: b32, b16, small, tiny [default: the size an arch.json records, else b32]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Count the parameters of a policy: shared, vision-specific, text-specific and total."""
    from search_spaces import PolicyError, count_params, recorded_size, resolve_policy

    if size is None:
        size = (recorded_size(policy) if policy.endswith(".json") else None) or "b32"
    try:
        resolved = resolve_policy(policy, size)
        counts = count_params(resolved, size)
    except (PolicyError, ValueError) as exc:
        raise error_exit(exc) from None
    result = {"policy": resolved.name, "size": size, **counts.to_dict()}
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{resolved.name} @ {size}")
    table.add_column("group")
    table.add_column("parameters", justify="right")
    for key in ("shared", "vision_specific", "text_specific", "total"):
        table.add_row(key, f"{result[key]:,}")
    table.caption = "shared includes the logit scale (1 parameter, used by both towers' similarity)"
    Console().print(table)


app.command("train")(run_commands.train)
app.command("eval")(run_commands.evaluate)

search_app = typer.Typer(no_args_is_help=True, help="Search sharing policies: Gumbel supernet, gradient conflict or Optuna.")
search_app.command("gumbel")(gumbel_commands.gumbel)
search_app.command("conflict")(conflict_commands.conflict)
search_app.command("rank-check")(rank_check_commands.rank_check)
search_app.command("per-compute")(per_compute_commands.per_compute)
search_app.command("optuna")(optuna_commands.optuna_search)
search_app.command("sweep")(sweep_commands.sweep)
app.add_typer(search_app, name="search")
bench_app = typer.Typer(no_args_is_help=True, help="ShareBench: policies trained standalone with several seeds, the ground truth of every search.")
bench_app.command("build")(bench_commands.build)
bench_app.command("show")(bench_commands.show)
bench_app.command("front")(bench_commands.front)
bench_app.command("regime")(bench_commands.regime)
app.add_typer(bench_app, name="bench")
data_app = typer.Typer(no_args_is_help=True, help="The real image-text set (ShareBench-real) built from Debian's packages.")
data_app.command("build")(data_commands.build)
data_app.command("check")(data_commands.check)
app.add_typer(data_app, name="data")
app.command("tune")(tune_commands.tune)
app.command("export")(export_commands.export)
app.command("report")(report_commands.report)
app.command("dashboard")(dashboard_commands.dashboard)
app.command("demo")(demo.demo)

