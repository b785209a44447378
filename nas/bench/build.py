"""`sharenas bench build`: train every (policy, seed) entry of a bench standalone and record it.

Layout of a bench directory:
- `config.yaml`: the resolved bench config; `policies/NAME.json`: every policy;
- `runs/NAME/seed_S/`: the training run of one entry (resumable, its checkpoints pruned when done);
- `entries/NAME/seed_S.json`: the finished entry (written atomically; a rerun skips it).

Entries run in `workers` processes with one thread each. A killed bench loses at most the progress
since each running entry's last checkpoint: rerunning the same command resumes there.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from trainer import atomic
from trainer.evaluation.precision import SCORE_PRECISION
from trainer.metrics import read_metrics, trained_seconds
from trainer.rundir import RunDir
from trainer.typed_config import ConfigError, load_config, to_dict

from nas.bench.config import HeldOutSection, LoadedBench, load_bench_config
from nas.bench.policies import bench_policies, in_space, shared_sublayers

ENTRIES, RUNS, POLICIES, BRANCHES = "entries", "runs", "policies", "branches"


@dataclass(frozen=True)
class Entry:
    name: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.name}/seed_{self.seed}"


def bench_entries(bench: LoadedBench, names: list[str]) -> list[Entry]:
    """Policy-major order (all seeds of a policy before the next), the extra seeds last."""
    cfg = bench.cfg
    out = [Entry(n, s) for n in names for s in cfg.seeds]
    out += [Entry(n, s) for n, seeds in cfg.extra_seeds.items() for s in seeds if s not in cfg.seeds]
    return out


def entry_file(out: Path, entry: Entry) -> Path:
    return out / ENTRIES / entry.name / f"seed_{entry.seed}.json"


def entry_run(out: Path, entry: Entry) -> Path:
    """The training run directory of `entry`."""
    return out / RUNS / entry.name / f"seed_{entry.seed}"


def entry_score_precision(out: Path, record: dict[str, Any]) -> str:
    """The precision the entry `record` of the bench at `out` was scored in. Entries written before it
    was recorded were scored at their run's training precision: bf16 for `bf16`, and for `auto` on
    CUDA; otherwise fp32 ("unrecorded" when the run's config is gone)."""
    if "score_precision" in record:
        return record["score_precision"]
    config = entry_run(out, Entry(record["name"], record["seed"])) / "config.yaml"
    if not config.is_file():
        return "unrecorded"
    precision = yaml.safe_load(config.read_text())["train"]["precision"]
    return "bf16" if precision == "bf16" or (precision == "auto" and record["device"].startswith("cuda")) else "fp32"


def held_out_pairs(section: HeldOutSection, bundle: Any, size: Any) -> Any:
    """The pairs the bench scores every checkpoint on (see `HeldOutSection`)."""
    from trainer.data import fresh_shapes

    if section.source == "data":
        if bundle.heldout is None:
            raise ConfigError("heldout.source: data, but the recipe's data has no held-out split (use source real, or heldout.source shapes)")
        return bundle.heldout
    return fresh_shapes(section.pairs, section.seed, size.image_size, size.context_length)


def policy_recipe(bench: LoadedBench, policy: str, seed: int) -> dict[str, Any]:
    """The bench recipe training `policy` (a preset or a policy file) with `seed`, as an entry trains."""
    recipe = to_dict(bench.recipe)
    recipe["model"]["policy"] = policy
    recipe["train"].update(seed=seed, num_threads=1, progress=False)
    return recipe


def entry_recipe(bench: LoadedBench, out: Path, name: str, seed: int) -> dict[str, Any]:
    """The training config of one entry: the bench recipe with the entry's policy file and seed."""
    return policy_recipe(bench, str((out / POLICIES / f"{name}.json").resolve()), seed)


def _scoring(cfg: Any) -> dict[str, Any]:
    """What an entry's record depends on beyond its training run: the held-out set and the scoring cadence."""
    return {"heldout": to_dict(cfg.heldout), "score_every_epochs": cfg.score_every_epochs}


def _comparable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A run's config without what does not change its training: where its policy file lies (compared
    by content instead) and how often it checkpointed (`run_entry` sets that per bench)."""
    recipe = json.loads(json.dumps(recipe))
    del recipe["model"]["policy"]
    for key in ("checkpoint_every", "checkpoint_steps", "keep_checkpoints"):
        recipe["train"].pop(key, None)
    return recipe


def reuse_entries(bench: LoadedBench, out: Path, source: Path, entries: list[Entry]) -> list[Entry]:
    """Copy the finished entries of the bench at `source` that trained the same policy with the same
    recipe and seed and were scored the same way (held-out set, cadence, precision; e.g. the runs a
    length study already made at the chosen length); returns the entries copied."""
    saved = source / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--reuse {source}: no bench there (no config.yaml); give the --out of an earlier `bench build`")
    other = load_config(saved, type(bench.cfg))
    if _scoring(other) != _scoring(bench.cfg):
        raise ConfigError(f"--reuse {source}: that bench scores on another held-out set or cadence; its entries cannot be reused")
    copied = []
    for entry in entries:
        record, run = entry_file(source, entry), entry_run(source, entry)
        theirs, ours = source / POLICIES / f"{entry.name}.json", out / POLICIES / f"{entry.name}.json"
        if entry_file(out, entry).is_file() or not record.is_file() or not theirs.is_file():
            continue
        if json.loads(theirs.read_text()) != json.loads(ours.read_text()):
            continue
        if entry_score_precision(source, json.loads(record.read_text())) != SCORE_PRECISION:
            continue
        if _comparable(to_dict(load_config(run / "config.yaml", type(bench.recipe)))) != _comparable(
                to_dict(load_config(entry_recipe(bench, out, entry.name, entry.seed), type(bench.recipe)))):
            continue
        target = entry_run(out, entry)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(run, target)
        entry_file(out, entry).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(entry_file(out, entry), json.loads(record.read_text()))
        copied.append(entry)
    return copied


def branch_run(run: Path, epochs: int) -> Path:
    """The run directory of the `epochs`-long cool-down branch of the entry run `run`."""
    return run / BRANCHES / f"epochs_{epochs}"


class _Scorer:
    """Scores checkpoints of one entry: the bench's held-out loss (`val_loss`) and every metric of the
    recipe's evaluation (retrieval, zero-shot, ...) but the held-out loss it would compute again."""

    def __init__(self, bench: LoadedBench, train_cfg: Any, policy: Any, size: Any, bundle: Any, device: Any, steps_per_epoch: int) -> None:
        from search_spaces import build_model
        from trainer.evaluation.heldout import materialize

        self.cfg, self.train_cfg, self.device, self.steps_per_epoch = bench.cfg, train_cfg, device, steps_per_epoch
        self.held_out = materialize(held_out_pairs(bench.cfg.heldout, bundle, size), bench.cfg.heldout.batch_size)
        self.bundle = dataclasses.replace(bundle, heldout=None)
        self.model = build_model(policy, size).to(device)
        self.seconds = 0.0

    def __call__(self, checkpoint: Path) -> dict[str, Any]:
        from trainer.checkpoint import load_model_weights, read_state
        from trainer.evaluation import evaluate
        from trainer.evaluation.heldout import held_out_loss

        start = time.perf_counter()
        step = read_state(checkpoint)["step"]
        load_model_weights(self.model, checkpoint)
        e = self.train_cfg.eval
        metrics = evaluate(self.model, self.bundle, self.device, batch_size=e.batch_size, nmi_pairs=0, probe_C=e.probe_C,
                           seed=self.train_cfg.train.seed, progress=False)
        point = {"step": step, "epoch": round(step / self.steps_per_epoch, 3), "val_loss": held_out_loss(self.model, self.held_out, self.device),
                 "metrics": metrics}
        self.seconds += time.perf_counter() - start
        return point


def read_step(checkpoint: Path) -> int:
    from trainer.checkpoint import read_state

    return int(read_state(checkpoint)["step"])


def _final_train_loss(run: Path) -> float | None:
    records = [r for r in read_metrics(run) if "train/loss" in r]
    return records[-1]["train/loss"] if records else None


def _train_branch(train_cfg: Any, run: Path, epochs: int, branch_step: int) -> tuple[Path, Any, float]:
    """Train the `epochs`-long cool-down branch of the run `run` from its checkpoint at `branch_step`
    (resuming the branch where it stopped); returns its directory, its result and its seconds."""
    from trainer.checkpoint import CHECKPOINTS, checkpoint_name
    from trainer.loop import train

    branch = branch_run(run, epochs)
    if not (branch / "config.yaml").is_file():
        source = run / CHECKPOINTS / checkpoint_name(branch_step)
        if not source.is_dir():
            raise RuntimeError(f"{run}: the checkpoint at step {branch_step} where the {epochs}-epoch branch starts is missing; "
                               f"delete {run} to retrain the entry")
        target = branch / CHECKPOINTS / checkpoint_name(branch_step)
        if not target.is_dir():
            atomic.copy_tree(source, target)
    cfg = copy.deepcopy(train_cfg)
    cfg.train.epochs, cfg.train.checkpoint_steps, cfg.train.checkpoint_every, cfg.train.keep_checkpoints = epochs, [], None, 1
    result = train(cfg, branch, resume=True)
    return branch, result, trained_seconds(branch)


def run_entry(config: str, overrides: list[str], out: str, name: str, seed: int) -> dict[str, Any]:
    """Train one entry (resuming its run), score its checkpoints on the held-out set (every metric at
    every scored point), train and score the cool-down branch of every shorter length, write its record."""
    import torch

    from search_spaces import count_params, get_size, resolve_policy
    from trainer.checkpoint import list_checkpoints
    from trainer.config import TrainConfig
    from trainer.data import build_data
    from trainer.distributed import pick_device
    from trainer.loop import train
    from trainer.optim import cooldown_start
    from trainer.sampler import BatchPlan, total_steps

    torch.set_num_threads(1)
    bench = load_bench_config(config, overrides)
    cfg, out_dir = bench.cfg, Path(out)
    policy_file = out_dir / POLICIES / f"{name}.json"
    train_cfg = load_config(entry_recipe(bench, out_dir, name, seed), TrainConfig)
    size = get_size(train_cfg.model.size)
    policy = resolve_policy(str(policy_file), size)
    bundle = build_data(train_cfg.data, size.image_size, size.context_length)
    plan = BatchPlan(len(bundle.train), train_cfg.train.batch_size, train_cfg.train.accum_steps, 1, seed)
    t, spe = train_cfg.train, plan.steps_per_epoch
    total = total_steps(t, spe)
    every = cfg.score_every_epochs * spe
    branches = {n: cooldown_start(train_cfg.optim, n * spe) for n in sorted(cfg.lengths)[:-1]}
    t.checkpoint_every, t.checkpoint_steps = every, sorted(set(branches.values()))
    t.keep_checkpoints = max(1, -(-total // every)) + len(branches)
    run = entry_run(out_dir, Entry(name, seed))
    result = train(train_cfg, run, resume="auto")
    seconds = trained_seconds(run)  # every session's, where the entry was resumed
    device = pick_device(t.device)
    score = _Scorer(bench, train_cfg, policy, size, bundle, device, spe)
    scored = [score(c) for c in list_checkpoints(run) if read_step(c) % every == 0 or read_step(c) == total]
    if not scored or scored[-1]["step"] != total:
        raise RuntimeError(f"{run}: the final checkpoint (step {total}) is missing; rerun to resume the entry")
    lengths: dict[str, Any] = {}
    for epochs, branch_step in branches.items():
        branch, branch_result, branch_seconds = _train_branch(train_cfg, run, epochs, branch_step)
        final = score(list_checkpoints(branch)[-1])
        points = [p for p in scored if p["step"] <= branch_step] + [final]
        lengths[str(epochs)] = {
            "steps": final["step"], "val_loss": final["val_loss"], "metrics": final["metrics"], "curve": points,
            "branch_step": branch_step, "train_loss": _final_train_loss(branch), "train_seconds": round(branch_seconds, 1),
        }
    record = {
        "name": name, "seed": seed, "policy": policy.to_dict(), "params": count_params(policy, size).total,
        "shared_sublayers": shared_sublayers(policy), "steps": total, "val_loss": scored[-1]["val_loss"], "curve": scored,
        "metrics": result.metrics, "chance": result.chance,
        "heldout_pairs": sum(int(images.shape[0]) for images, _ in score.held_out),
        "train_loss": _final_train_loss(run), "train_seconds": round(seconds, 1), "score_seconds": round(score.seconds, 1),
        "device": str(device), "score_precision": SCORE_PRECISION,
    }
    if lengths:
        record["lengths"] = {**lengths, str(max(cfg.lengths)): {
            "steps": total, "val_loss": record["val_loss"], "metrics": result.metrics, "curve": scored,
            "branch_step": None, "train_loss": record["train_loss"], "train_seconds": record["train_seconds"]}}
    entry = entry_file(out_dir, Entry(name, seed))
    entry.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(entry, record)
    for checkpoint in list_checkpoints(run)[:-1]:
        shutil.rmtree(checkpoint)
    for epochs in branches:
        for checkpoint in list_checkpoints(branch_run(run, epochs))[:-1]:
            shutil.rmtree(checkpoint)
    return record


def prepare(bench: LoadedBench, out: Path) -> list[Entry]:
    """Write the config and the policies (refusing a directory of another bench), return all entries."""
    RunDir(out, "bench", markers=()).open(bench.cfg, "auto")  # a bench goes on with its missing entries
    policies = bench_policies(bench)
    space = bench.cfg.space.build()
    for name, policy in policies.items():
        path = out / POLICIES / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or json.loads(path.read_text()) != policy.to_dict():
            atomic.write_with(path, policy.save)
    outside = [n for n, p in policies.items() if not in_space(space, p)]
    if outside:
        print(f"bench: {', '.join(outside)} lie outside the supernet space (kept for the paper check, not for rank checks)", file=sys.stderr)
    return bench_entries(bench, list(policies))


def build_bench(config: str | Path, out: str | Path, workers: int = 1, overrides: list[str] = (), reuse: list[Path] = ()) -> list[Entry]:
    """Run every missing entry (after copying those that the benches in `reuse` already trained the
    same way); returns the entries that failed (empty when the bench is complete)."""
    bench, out = load_bench_config(config, list(overrides)), Path(out)
    with RunDir(out, "bench").lock():
        return _build(bench, Path(config), out, workers, list(overrides), list(reuse))


def _build(bench: LoadedBench, config: Path, out: Path, workers: int, overrides: list[str], reuse: list[Path]) -> list[Entry]:
    from tqdm import tqdm

    entries = prepare(bench, out)
    for source in reuse:
        copied = reuse_entries(bench, out, Path(source), entries)
        print(f"bench: reused {len(copied)} finished entries of {source}", file=sys.stderr)
    todo = [e for e in entries if not entry_file(out, e).is_file()]
    print(f"bench {bench.cfg.name}: {len(entries) - len(todo)}/{len(entries)} entries done, {len(todo)} to train with {workers} worker(s) -> {out}", file=sys.stderr)
    failed: list[Entry] = []
    if not todo:
        return failed
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc="bench", unit="entry")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(run_entry, str(config), list(overrides), str(out), e.name, e.seed): e for e in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                entry = pending.pop(future)
                try:
                    record = future.result()
                    bar.set_postfix_str(f"{entry.key} val_loss {record['val_loss']:.3f} in {record['train_seconds']:.0f}s")
                except BrokenProcessPool:
                    bar.close()
                    raise RuntimeError(f"a bench worker died while training {entry.key}; rerun the same command to resume") from None
                except Exception as exc:  # one bad entry must not lose the others
                    failed.append(entry)
                    print(f"bench: {entry.key} failed: {exc}", file=sys.stderr)
                bar.update(1)
    bar.close()
    return failed
