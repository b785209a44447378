"""The prepared GPU check behind `scripts/gpu_check.sh`: every GPU code path and speed goal of
sharenas in one run (under 8 minutes on one GPU), one table at the end.

Each row runs as its own process with its own time limit (on a GPU the limits add up to 460 s), so
a row that fails or runs out of time is a row that says so, and the rest still run. `--dry-run` runs the same rows on the CPU at tiny
sizes (a few steps, a slice of ShareBench-tiny), so the script cannot rot unseen; its figures only
show that the code runs, not how fast a GPU is. Exits 1 when any row failed to produce its figure
(a figure that misses its goal is reported, not an error).

    scripts/gpu_check.sh                 # on a machine with a CUDA GPU
    scripts/gpu_check.sh --dry-run       # anywhere, on the CPU
    scripts/gpu_check.sh --json experiments/results/gpu-check.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "experiments" / "bench" / "sharebench-tiny.yaml"
CPU_TABLE = ROOT / "experiments" / "results" / "sharebench-tiny.json"
DRY_RUN_LIMIT = 1800.0


@dataclass
class Row:
    check: str
    setting: str
    figure: str
    goal: str
    status: str
    seconds: float


@dataclass(frozen=True)
class Mode:
    dry: bool
    tmp: Path

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def limit(self, gpu_seconds: float) -> float:
        """A row's time limit: what fits the GPU run's 8 minutes; on the CPU only a guard against a
        hang, as a loaded machine may be many times slower (the dry run's figures are not timed goals)."""
        return DRY_RUN_LIMIT if self.dry else gpu_seconds


class RowFailed(RuntimeError):
    """A row could not produce its figure; the message says why."""


def run(command: list[str], timeout: float, cwd: Path = ROOT) -> str:
    """Run a command of this project; its output, or `RowFailed` with the tail of it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RowFailed(f"ran past its {timeout:.0f} s limit") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RowFailed(f"exit {done.returncode}: {tail[0][:200]}")
    return done.stdout


def found(pattern: str, text: str) -> re.Match:
    match = re.search(pattern, text)
    if match is None:
        raise RowFailed(f"no {pattern!r} in the output")
    return match


PYTHON = [sys.executable]
SHARENAS = [sys.executable, "-m", "nas.cli"]


def open_clip_ratio(mode: Mode) -> tuple[str, str, str]:
    try:
        import open_clip  # noqa: F401
    except ImportError:
        raise RowFailed("open_clip is not installed (pip install open-clip-torch): no reference to compare with") from None
    args = ["--device", "cpu", "--batch", "1", "--dtype", "fp32", "--steps", "1", "--warmup", "0"] if mode.dry else \
        ["--device", "cuda", "--batch", "256", "--dtype", "bf16", "--steps", "10", "--warmup", "3"]
    out = run([*PYTHON, "benchmarks/step_vs_open_clip.py", *args], mode.limit(45))
    ratio = found(r"ratio open_clip/sharenas = ([\d.]+)", out).group(1)
    setting = "B/32, same weights, " + ("CPU fp32 batch 1, one step" if mode.dry else "bf16 batch 256")
    return setting, f"{ratio} (open_clip / sharenas step time)", ">= 1.0"


def step_flops(mode: Mode) -> str:
    args = ["--size", "tiny", "--batch", "16", "--precision", "fp32", "--steps", "2", "--warmup", "1", "--device", "cpu"] if mode.dry else \
        ["--size", "b32", "--batch", "256", "--precision", "bf16", "--steps", "10", "--warmup", "3", "--device", "cuda"]
    return run([*PYTHON, "benchmarks/step_flops.py", "--policies", "msclip", "clip-t768", *args], mode.limit(45))


def mfu(mode: Mode, out: str) -> tuple[str, str, str]:
    line = found(r"msclip: ([\d.]+) GFLOP/step, ([\d.]+) ms/step, ([\d.e+-]+) TFLOP/s, (MFU [^,]+), memory ([^,]+), (.+)", out)
    gflop, ms, tflops, figure, estimate, measured = line.groups()
    setting = "msclip " + ("tiny, CPU fp32 batch 16" if mode.dry else "B/32, bf16 batch 256")
    return setting, f"{figure} ({gflop} GFLOP/step counted, {ms} ms, {tflops} TFLOP/s; memory {estimate}, {measured})", ">= 40% (bf16)"


def policy_ratio(mode: Mode, out: str) -> tuple[str, str, str]:
    ratio = found(r"step ratio msclip / clip-t768 = ([\d.]+)", out).group(1)
    return ("tiny, CPU fp32 batch 16" if mode.dry else "B/32, bf16 batch 256"), f"{ratio} (msclip / clip-t768 step time)", "about 1.0"


def supernet_overhead(mode: Mode) -> tuple[str, str, str]:
    args = ["--size", "tiny", "--batch", "16", "--steps", "2", "--warmup", "1", "--device", "cpu"] if mode.dry else \
        ["--size", "b32", "--batch", "256", "--precision", "bf16", "--steps", "10", "--warmup", "3", "--device", "cuda"]
    out = run([*PYTHON, "benchmarks/supernet_overhead.py", *args], mode.limit(45))
    ratio = found(r"step ratio \(supernet / standalone\): ([\d.]+)", out).group(1)
    return ("tiny, CPU batch 16" if mode.dry else "B/32, bf16 batch 256"), f"{ratio} (supernet / standalone step time)", "<= 1.15"


def sharebench(mode: Mode) -> tuple[str, str, str]:
    """ShareBench-tiny trained on this device by many processes at once, its policy means ranked
    against the committed CPU table (Kendall tau of the held-out loss means)."""
    from scipy.stats import kendalltau

    cfg = yaml.safe_load(BENCH.read_text())
    cfg["recipe"] = str((BENCH.parent / cfg["recipe"]).resolve())
    cfg["policies"] = [str((BENCH.parent / p).resolve()) if p.endswith(".json") else p for p in cfg["policies"]]
    workers = 16
    sets = [f"train.device={mode.device}"]
    if mode.dry:  # 4 policies, one seed, 2 steps, a small held-out set
        cfg.update(policies=["msclip", "clip-t768", "share-all", "share-last-6"], random={"count": 0, "strata": 1, "seed": 0}, seeds=[0],
                   extra_seeds={}, heldout={**cfg["heldout"], "pairs": 256}, bootstrap=100)
        sets += ["train.epochs=null", "train.steps=2", "data.shapes_zeroshot_per_class=2", "data.max_eval_images=40", "eval.nmi_pairs=0", "train.num_threads=1"]
        workers = 2
    config, out = mode.tmp / "sharebench.yaml", mode.tmp / "sharebench"
    config.write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    run([*SHARENAS, "bench", "build", str(config), "--out", str(out), "--workers", str(workers), *(a for s in sets for a in ("--set", s))],
        mode.limit(200))
    wall = time.perf_counter() - start
    table = json.loads(run([*SHARENAS, "bench", "show", str(out), "--json"], mode.limit(20)))
    reference = json.loads(CPU_TABLE.read_text())["policies"]
    names = sorted(set(table["policies"]) & set(reference))
    tau = kendalltau([table["policies"][n]["mean"]["val_loss"] for n in names], [reference[n]["mean"]["val_loss"] for n in names]).statistic
    runs = table["entries"]
    setting = f"{runs} runs, {workers} processes on one {'CPU (2 steps each)' if mode.dry else 'GPU'}"
    return setting, f"{wall:.0f} s wall; Kendall tau {tau:.2f} over {len(names)} policy means vs the committed CPU table", \
        "69 runs; tau near the CPU seed-to-seed ceiling"


def tune_fractional(mode: Mode) -> tuple[str, str, str]:
    """8 tiny Optuna trials through `sharenas tune`, sharing one GPU (1/8 each)."""
    import optuna

    base = ROOT / "experiments" / "tiny" / "msclip.yaml"
    train = {"base": str(base), "data": {"source": "shapes", "num_shapes": 120, "shapes_zeroshot_per_class": 2, "max_eval_images": 40,
                                         "heldout_shapes": 64},
             "train": {"epochs": None, "steps": 4, "batch_size": 16, "checkpoint_every": None, "progress": False, "num_threads": 1,
                       "device": mode.device},
             "eval": {"every_epochs": None, "every_steps": 2, "nmi_pairs": 0, "heldout_batch_size": 32}}
    storage = f"sqlite:///{mode.tmp}/tune-study.db"
    search = {"study_name": "gpu-check", "storage": storage, "n_trials": 8, "baselines": ["msclip", "clip"],
              "objective": {"metric": "heldout/shapes/loss", "direction": "minimize"}, "sampler": {"seed": 0, "startup_trials": 4},
              "pruner": {"kind": "none"}, "space": {"layouts": ["share_last", "sublayers"], "parallel_branch": False}, "train": train}
    gpu = 0 if mode.dry else 0.125
    tune = {"search": "tune-search.yaml", "kind": "optuna", "experiment": "gpu-check", "storage_path": str(mode.tmp / "ray"), "num_samples": 8,
            "max_concurrent": 8, "resources": {"cpu": 0.25 if mode.dry else 1, "gpu": gpu}, "scheduler": {"kind": "fifo"}, "max_failures": 1}
    (mode.tmp / "tune-search.yaml").write_text(yaml.safe_dump(search))
    (mode.tmp / "tune.yaml").write_text(yaml.safe_dump(tune))
    start = time.perf_counter()
    run([*SHARENAS, "tune", str(mode.tmp / "tune.yaml")], mode.limit(60), cwd=mode.tmp)
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name="gpu-check", storage=storage).get_trials(deepcopy=False)
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    if done != 8:
        raise RowFailed(f"{done} of 8 trials finished")
    return f"8 tiny trials, {gpu or 'no'} GPU each{' (CPU)' if mode.dry else ''}", f"{done}/8 finished in {wall:.0f} s", "8/8"


def onnx_export(mode: Mode) -> tuple[str, str, str]:
    run_dir, export_dir = mode.tmp / "onnx-run", mode.tmp / "onnx-export"
    steps = 2 if mode.dry else 50
    run([*SHARENAS, "train", str(ROOT / "experiments" / "tiny" / "msclip.yaml"), "--out", str(run_dir), "--set", f"train.device={mode.device}",
         "--set", "train.epochs=null", "--set", f"train.steps={steps}", "--set", "train.progress=false", "--set", "eval.every_epochs=null",
         "--set", "eval.nmi_pairs=0", "--set", "train.num_threads=1", "--set", "data.source=shapes", "--set", "data.num_shapes=120",
         "--set", "data.shapes_zeroshot_per_class=2", "--set", "data.max_eval_images=40"], mode.limit(30))
    out = run([*SHARENAS, "export", str(run_dir), "--out", str(export_dir), "--onnx"], mode.limit(15))
    diff = found(r"max \|diff\| vs PyTorch ([\d.e+-]+)", out).group(1)
    return f"tiny msclip trained {steps} steps on {mode.device.upper()}", f"onnxruntime max |diff| vs PyTorch {diff}", "agrees (export checks it)"


def checks(mode: Mode) -> list[tuple[str, Callable[[], tuple[str, str, str]]]]:
    flops: dict[str, str] = {}

    def counted() -> str:
        if "out" not in flops:
            flops["out"] = step_flops(mode)
        return flops["out"]

    return [
        ("B/32 clip step vs open_clip ViT-B-32", lambda: open_clip_ratio(mode)),
        ("MFU of the msclip training step", lambda: mfu(mode, counted())),
        ("msclip / clip-t768 step", lambda: policy_ratio(mode, counted())),
        ("Supernet step overhead", lambda: supernet_overhead(mode)),
        ("ShareBench-tiny on one device", lambda: sharebench(mode)),
        ("sharenas tune, fractional GPUs", lambda: tune_fractional(mode)),
        ("ONNX export checked with onnxruntime", lambda: onnx_export(mode)),
    ]


def render(rows: list[Row], title: str) -> str:
    from tabulate import tabulate

    table = [[r.check, r.setting, r.figure, r.goal, r.status, f"{r.seconds:.0f}"] for r in rows]
    return f"{title}\n" + tabulate(table, headers=["check", "setting", "figure", "goal", "status", "s"], tablefmt="github")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same rows on the CPU at tiny sizes")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device here; run on a GPU machine, or pass --dry-run to run the same rows on the CPU", file=sys.stderr)
        return 2
    device = "CPU (dry run: tiny sizes, few steps)" if args.dry_run else torch.cuda.get_device_name(0)
    rows: list[Row] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        mode = Mode(args.dry_run, Path(tmp))
        for name, check in checks(mode):
            began = time.perf_counter()
            try:
                setting, figure, goal = check()
                status = "ran"
            except RowFailed as exc:
                setting, figure, goal, status = "", str(exc), "", "FAILED"
            except Exception as exc:  # a bug of this script or a changed output: the row says so, the rest still run
                setting, figure, goal, status = "", f"{type(exc).__name__}: {exc}", "", "FAILED"
            rows.append(Row(name, setting, figure, goal, status, time.perf_counter() - began))
            print(f"gpu_check: {name}: {status} ({rows[-1].seconds:.0f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    print(render(rows, f"sharenas GPU check on {device}, torch {torch.__version__}, {wall:.0f} s in all"))
    if args.json is not None:
        args.json.write_text(json.dumps({"device": device, "torch": torch.__version__, "wall_seconds": wall, "dry_run": args.dry_run,
                                         "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 1 if any(r.status == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
