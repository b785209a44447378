"""`sharenas demo`: the embedded-default pipeline end to end on the CPU, in minutes.

A short Gumbel supernet search and a short Optuna study (the `msclip`, `clip` and `msclip-s` baselines plus
sampled layouts, scored by the ShareBench held-out loss) on the embedded data, each compared with the
shared-all `msclip` baseline (the Gumbel search's derived policy against `msclip`, `msclip-s` and the
trivial proxies' picks, with ShareBench-tiny's standalone results for the bench policies); then the
Gumbel search's derived architecture is exported and both searches get an HTML report. Uses the tiny configs of the checkout's `experiments/tiny/`, shortened by
`--set` style overrides.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nas.bench.record import BenchRecord

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments" / "tiny"
BENCH = EXPERIMENTS.parent / "results" / "sharebench-tiny.json"
PICK_PAIRS = 1024

GUMBEL_OVERRIDES = ("train.epochs=2", "search.warmup_epochs=0.5", "search.few_shot_epochs=1", "derive.samples=3")
OPTUNA_TRIALS = 6
OPTUNA_OVERRIDES = (
    "train.epochs=null", "train.steps=61", "eval.every_epochs=null", "eval.every_steps=30",
    "data.heldout_shapes=1024", "pruner.warmup_steps=29",
)


def picks_note(table: BenchRecord, pairs: int) -> str:
    """How to read the picks table, from the bench `table` itself: the chance level of the held-out
    loss on the `pairs` pairs the inherited weights are scored on and on the bench's own held-out
    set, and how long the bench's standalone trainings ran."""
    from trainer.evaluation.chance import contrastive_chance

    h = table.bench_config().heldout
    inherited, standalone = contrastive_chance(pairs, h.batch_size), contrastive_chance(h.pairs, h.batch_size)
    chance = f"{inherited:.2f}" if round(inherited, 2) == round(standalone, 2) else f"{inherited:.2f} inherited, {standalone:.2f} standalone"
    epochs = sorted({run.curve[-1]["epoch"] for entry in table.policies.values() for run in entry.runs})
    length = " or ".join(f"{e:g}" for e in epochs)
    return (f"held-out loss in nats, lower is better; chance (uninformative features, batches of {h.batch_size}) = {chance}. "
            f"Inherited: this supernet's weights on {pairs} held-out pairs; standalone: the bench's {length}-epoch trainings, "
            f"scored on its {h.pairs} held-out pairs.")


def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="Parent folder; each demo run writes a new timestamped folder in it.")) -> None:
    """Run a tiny Gumbel search and a tiny Optuna study on the embedded data (CPU, a few minutes)."""
    from trainer import atomic
    from trainer.typed_config import load_config

    from nas.discrete.config import load_search_config
    from nas.discrete.search import run_search
    from nas.export.artifacts import export
    from nas.ranking.picks import picks_frame, proxy_picks
    from nas.ranking.rank_check import read_bench_table
    from nas.report import write_report
    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search

    if not EXPERIMENTS.is_dir():
        typer.echo(f"error: {EXPERIMENTS} not found; run the demo from a sharenas checkout", err=True)
        raise typer.Exit(2)
    start = time.perf_counter()
    out = out / time.strftime("%Y%m%d-%H%M%S")  # a new folder per run: earlier demos are kept
    out.mkdir(parents=True)

    typer.echo("[1/5] Gumbel supernet search (tiny, embedded data)")
    gumbel_cfg = load_config(EXPERIMENTS / "gumbel.yaml", GumbelConfig, GUMBEL_OVERRIDES)
    gumbel = run_gumbel_search(gumbel_cfg, out / "gumbel", retrain=False)

    typer.echo(f"[2/5] The derived policy against msclip, msclip-s and the trivial proxies' picks ({BENCH.name})")
    bench_table = read_bench_table(BENCH)
    picks = picks_frame(proxy_picks(gumbel.run_dir, bench_table, heldout_pairs=PICK_PAIRS))
    atomic.write_text(out / "picks.md", picks.to_markdown(index=False) + "\n")
    typer.echo(picks.to_string(index=False))
    typer.echo(picks_note(bench_table, PICK_PAIRS))

    typer.echo(f"[3/5] Optuna study ({OPTUNA_TRIALS} trials: 3 baselines + sampled layouts)")
    optuna_cfg = load_search_config(EXPERIMENTS / "optuna.yaml", [*OPTUNA_OVERRIDES, f"out_dir={out / 'optuna'}"])
    study = run_search(optuna_cfg, storage=None, study_name="demo", n_trials=OPTUNA_TRIALS)

    typer.echo("[4/5] Export of the derived architecture (arch.json + model.safetensors + model card)")
    exported = export(gumbel.run_dir, out / "export")
    typer.echo("[5/5] HTML reports")
    write_report(gumbel.run_dir, out / "gumbel-report.html")
    write_report(None, out / "optuna-report.html", storage=study.storage, study=study.study_name)

    typer.echo(f"\ndone in {time.perf_counter() - start:.0f} s; outputs:")
    typer.echo(f"  gumbel search run     {gumbel.run_dir}")
    typer.echo(f"  derived architecture  {gumbel.run_dir / 'arch.json'}  (check: sharenas params {gumbel.run_dir / 'arch.json'} --size tiny)")
    typer.echo(f"  gate metrics          {gumbel.run_dir / 'metrics.jsonl'}")
    typer.echo(f"  derived vs msclip     {out / 'picks.md'}")
    typer.echo(f"  optuna results        {study.out_dir / 'results.md'} and results.csv")
    typer.echo(f"  optuna storage        {study.storage}  (watch: sharenas dashboard --storage {study.storage})")
    typer.echo(f"  exported model        {out / 'export'}  ({exported.params.total:,} parameters; "
               "load: search_spaces.load_exported(DIR))")
    typer.echo(f"  reports               {out / 'gumbel-report.html'} and {out / 'optuna-report.html'}")
