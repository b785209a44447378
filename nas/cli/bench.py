"""`sharenas bench build` and `sharenas bench show`: typer callbacks over `nas.bench`."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nas.cli.console import error_exit, json_safe

if TYPE_CHECKING:
    from nas.bench.record import BenchRecord


def build(
    config: Path = typer.Argument(..., help="Bench config (YAML), e.g. experiments/bench/sharebench-tiny.yaml."),
    out: Path = typer.Option(..., "--out", help="Bench directory; rerun the same command to resume."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, one CPU thread each."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a bench config value (repeatable), e.g. --set train.epochs=2, written over the recipe."),
    reuse: Optional[list[Path]] = typer.Option(None, "--reuse", help="Another bench directory whose entries trained the same way are copied, not retrained (repeatable)."),
) -> None:
    """Train every (policy, seed) entry of a bench standalone; resumable."""
    from search_spaces import PolicyError
    from trainer.run import USER_ERRORS

    from nas.bench.build import build_bench

    try:
        failed = build_bench(config, out, workers, overrides or [], reuse or [])
    except (*USER_ERRORS, PolicyError, RuntimeError) as exc:
        raise error_exit(exc, 2 if not isinstance(exc, RuntimeError) else 1) from None
    if failed:
        raise error_exit(f"{len(failed)} entries failed ({', '.join(e.key for e in failed)}); the others are kept, rerun to retry", 1)
    typer.echo(f"bench complete: sharenas bench show {out}")


def load_table(source: Path, bootstrap: int, chance_config: Optional[Path] = None, length: Optional[int] = None) -> BenchRecord:
    """A bench table computed from a bench directory (at `length` epochs: of its runs' branches of that
    length), or recomputed from the runs its JSON records, keeping the sections computed from other
    benches (`--lengths`, `--compare`)."""
    from nas.bench.record import BenchRecord
    from nas.bench.table import bench_table, load_paper_results, recompute_table

    if source.suffix == ".json":
        try:
            table = BenchRecord.load(source)
        except ValueError as exc:
            raise ValueError(f"{exc}; give a bench table with runs (policies[*].runs), the output of `sharenas bench show DIR --json`") from None
        try:
            result = recompute_table(table, bootstrap, load_paper_results(), chance_config)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
        if length is not None:
            raise ValueError(f"--length applies to a bench directory, not to the table {source} (a table holds one length)")
        return replace(result, lengths=table.lengths, agreement=table.agreement)
    return bench_table(source, bootstrap, load_paper_results(), chance_config, length)


def _cross_bench(table: BenchRecord, lengths: list[Path], compare: list[Path], bootstrap: int) -> None:
    from nas.ranking.agreement import bench_agreement
    from nas.ranking.lengths import length_comparison

    if lengths:
        table.lengths = length_comparison([load_table(p, bootstrap) for p in lengths])
    if compare:
        others = [(load_table(path, bootstrap), path) for path in compare]
        table.agreement = [bench_agreement(table, other, other.name or path.stem, bootstrap) for other, path in others]


def show(
    source: Path = typer.Argument(..., help="A bench directory (the --out of `bench build`) or its JSON table (recomputed from its runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the machine-readable table."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the markdown rendering to this file."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="Bootstrap resamples for the confidence intervals."),
    chance_config: Optional[Path] = typer.Option(
        None, "--config", help="The bench config SOURCE was built with: computes the chance levels of a bench built before they were recorded."),
    lengths: Optional[list[Path]] = typer.Option(
        None, "--lengths", help="Benches of the same policies and seeds at other training lengths (directories or JSONs; repeatable): the length study."),
    compare: Optional[list[Path]] = typer.Option(
        None, "--compare", help="Another bench (directory or JSON; repeatable): how well it ranks this bench's policies, each by its own ranking metric."),
    length: Optional[int] = typer.Option(None, "--length", metavar="EPOCHS",
                                         help="For a bench built with `lengths`: the table of its runs at this length (their cool-down branches)."),
) -> None:
    """The bench table (mean +- std per policy, pooled seed std, differences from the reference paired by
    seed) and its noise ceiling (seed-to-seed Kendall tau / Spearman, CIs)."""
    from nas.bench.record import BenchRecord
    from nas.bench.render import bench_markdown, bench_title, ceiling_frame, paired_frame, policy_frame, spread_frame

    try:
        table = load_table(source, bootstrap, chance_config, length)
        _cross_bench(table, lengths or [], compare or [], bootstrap)
    except (OSError, ValueError) as exc:
        raise error_exit(exc) from None
    data = json_safe(table.to_json())
    table = BenchRecord.from_json(data)
    if markdown is not None:
        name = table.name or source.stem
        title = {"sharebench-tiny-short": "ShareBench-tiny short trials"}.get(name, bench_title(name))
        options = (f" --config {chance_config}" if chance_config else "") + "".join(f" --lengths {p}" for p in lengths or []) + (
            "".join(f" --compare {p}" for p in compare or [])) + (f" --length {length}" if length is not None else "")
        shown = f"sharenas bench show {source}{options} --json --markdown {markdown}"
        if source.suffix == ".json":
            text = bench_markdown(table, title, shown, "recomputed from the runs the JSON records, which `scripts/sharebench.sh` trains")
        else:
            text = bench_markdown(table, title, f"scripts/sharebench.sh (bench build, then {shown})")
        from trainer import atomic

        atomic.write_text(markdown, text)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(policy_frame(table).to_string(index=False))
    typer.echo("\nSeed std pooled over policies (df: the sum of seeds - 1):")
    typer.echo(spread_frame(table).to_string(index=False))
    paired = paired_frame(table)
    if not paired.empty:
        typer.echo(f"\nDifferences from {table.reference} paired by seed (mean ± standard error):")
        typer.echo(paired.to_string(index=False))
    typer.echo("")
    typer.echo(ceiling_frame(table).to_string(index=False))


def front(
    table_file: Path = typer.Argument(..., help="A bench table (.json), e.g. experiments/results/sharebench-tiny.json."),
    out: Path = typer.Option(..., "--out", help="Results JSON; the markdown goes beside it (.md)."),
    judge: Optional[list[str]] = typer.Option(None, "--judge", metavar="NAME=FILE[@SECONDS]",
                                              help="A search's pareto.json or sweep.json, scored by the standalone scores (repeatable); "
                                                   "@SECONDS: an Optuna study's front after that much compute."),
    scores: Optional[list[Path]] = typer.Option(None, "--scores", metavar="TABLE",
                                                help="A further bench table built with the bench's recipe, e.g. of the policies searches chose (repeatable)."),
    write_missing: Optional[Path] = typer.Option(None, "--write-missing", metavar="DIR",
                                                 help="Write each chosen policy no table scores as DIR/NAME.json, ready for a bench config's policies."),
    seeds: Optional[list[int]] = typer.Option(None, "--seeds", metavar="SEED",
                                              help="Score by these seeds' runs alone (repeatable), e.g. the seeds a study's trials did not train."),
) -> None:
    """The bench's true front (loss vs parameters) and its hypervolume, and each judged search's ratio to it."""
    import re
    import shlex
    import sys

    from trainer import atomic

    from nas.bench.front import JUDGED, SCHEMA, inherited_agreement, judge as judge_front, scored_points, spec_key, to_markdown, true_front, unscored
    from nas.bench.record import BenchRecord
    from nas.records import read_record

    try:
        table = BenchRecord.load(table_file)
        known, repeats = scored_points(table, {str(path): BenchRecord.load(path) for path in scores or []}, seeds or None)
        truth = true_front(table, known)
        searches, missing = [], {}
        for item in judge or []:
            name, sep, path = item.partition("=")
            path, at, cut = path.partition("@")
            if not sep or (at and not re.fullmatch(r"\d+(\.\d*)?", cut)):
                raise ValueError(f"--judge {item!r}: give NAME=FILE or NAME=FILE@SECONDS")
            record = read_record(path, *JUDGED)
            chosen, seconds = record.front(float(cut) if at else None)
            searches.append({**judge_front(name, chosen, seconds, known, truth), "inherited_vs_standalone": inherited_agreement(record, known)})
            missing.update((spec_key(spec), spec) for spec in unscored(chosen, known))
    except (OSError, ValueError, KeyError) as exc:
        raise error_exit(f"bench front: {exc}", 2) from None
    result = {"schema": SCHEMA, "bench": str(table_file), "scores": [str(p) for p in scores or []], "seeds": seeds or None, "truth": truth,
              "repeats": repeats, "searches": searches}
    command = "sharenas bench front " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("front") + 1:]) if "front" in sys.argv else ""
    atomic.write_json(out, json_safe(result))
    atomic.write_text(out.with_suffix(".md"), to_markdown(result, command))
    typer.echo(to_markdown(result, command))
    if write_missing is not None:
        write_missing.mkdir(parents=True, exist_ok=True)
        for key, spec in missing.items():
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", spec.get("name", "policy")).strip("_")
            path = write_missing / f"{stem}-{key[:8]}.json"
            atomic.write_json(path, spec)
            typer.echo(f"missing: {path}")


def regime(
    cells: list[str] = typer.Argument(..., metavar="NAME=DIR", help="A cell of the map: its name and bench directory (built with `lengths`)."),
    out: Path = typer.Option(..., "--out", help="Results JSON; the markdown goes beside it (.md)."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="Bootstrap resamples for the Kendall tau CIs."),
) -> None:
    """The regime map: per cell and training length, whether the policies that differ only inside the
    transformer separate (between-policy vs pooled seed std, seed-to-seed Kendall tau, CPU-hours)."""
    import shlex
    import sys

    from trainer import atomic

    from nas.bench.regime import regime_map, regime_markdown

    try:
        pairs = {}
        for item in cells:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"{item!r}: give each cell as NAME=DIR")
            pairs[name] = Path(path)
        result = regime_map(pairs, bootstrap)
    except (OSError, ValueError, KeyError) as exc:
        raise error_exit(f"bench regime: {exc}", 2) from None
    command = "sharenas bench regime " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("regime") + 1:]) if "regime" in sys.argv else ""
    atomic.write_json(out, json_safe(result))
    text = regime_markdown(result, command)
    atomic.write_text(out.with_suffix(".md"), text)
    typer.echo(text)
