"""The training loop: one code path for a single process and for torchrun/DDP.

Semantics that callers rely on:
- `train.batch_size` is the global batch of one optimizer step; the contrastive loss is computed
  over all of it (features gathered across processes). With `train.accum_steps > 1` the loss still
  covers the whole global batch: features of all micro-batches are first computed without
  gradients, then each micro-batch is recomputed with gradients against the cached rest (open_clip's
  accumulation), so accumulation trades compute for memory without changing the objective.
- The data order is a function of (seed, epoch, step) (`trainer.sampler`), so N processes follow
  the loss trajectory of one process, and `resume=True` continues mid-epoch exactly where the
  last checkpoint stopped (bit-identical on CPU with `num_workers=0`).
- A non-finite loss or gradient norm raises `TrainingDiverged` before the optimizer step; the last
  good checkpoint stays untouched.
"""
from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainer.acceleration import enable_tf32, maybe_compile
from trainer.checkpoint import capture_rng, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from trainer.config import TrainConfig
from trainer.distributed import World, barrier, init_distributed, shutdown, sum_over_ranks
from trainer.evaluation.chance import chance_levels
from trainer.memory import fit_in_memory
from trainer.metrics import TRAINED_SECONDS, MetricsWriter, trained_seconds
from trainer.optim import build_optimizer, scheduled_lr, warmup_steps
from trainer.rundir import Resume, RunDir
from trainer.sampler import BatchPlan, total_steps
from trainer.step import TrainingStep, autocast_context


RESUME_FIXED = ("model.", "data.", "train.seed", "train.batch_size")
"""Config keys a resumed run must keep: they define the model and the data order."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the message says where and what to do."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    """Evaluation metrics at the end of training."""
    chance: dict[str, float] = field(default_factory=dict)
    """Chance level of each metric on this run's evaluation data."""


EvalCallback = Callable[[int, dict[str, float]], None]
StepCallback = Callable[[int], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: Resume = False,
    on_eval: EvalCallback | None = None,
    on_eval_elsewhere: StepCallback | None = None,
) -> TrainResult:
    """Train `cfg` into `run_dir`; under torchrun every process calls this. `train.num_threads`
    applies for the duration of the call.

    `on_eval(step, metrics)` runs on process 0 after each evaluation (e.g. to report to a search),
    after the checkpoint of that step when one is due; an exception it raises (a pruned trial) stops
    training, so raise only in single-process runs. `on_eval_elsewhere(step)` runs on every other
    process at the same point: what a report that every process joins (Ray Train's) needs.
    """
    threads = torch.get_num_threads()
    world = init_distributed(cfg.train.device)
    try:
        return _Trainer(cfg, Path(run_dir), world).run(resume, on_eval, on_eval_elsewhere)
    finally:
        shutdown(world)
        torch.set_num_threads(threads)


class _Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, world: World) -> None:
        self.cfg, self.run_dir, self.world = cfg, run_dir, world
        self.device = world.device
        t = cfg.train
        if t.num_threads is not None:
            torch.set_num_threads(t.num_threads)
        enable_tf32(self.device)

    # setup ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        from search_spaces import build_model
        from trainer.data import build_data

        cfg, world = self.cfg, self.world
        seed_everything(cfg.train.seed)
        model = build_model(cfg.model.policy, cfg.model.size)
        self.bundle = build_data(cfg.data, model.size.image_size, model.size.context_length)
        seed_everything(cfg.train.seed + 1_000_003 * world.rank)
        model.to(self.device)
        if cfg.train.grad_checkpointing:
            model.set_grad_checkpointing(True)
        self.accum, memory = fit_in_memory(cfg.train, model, world)  # a step that cannot fit stops here, before the run directory
        if memory is not None and world.is_main:
            print(f"memory: {memory}", file=sys.stderr)
        maybe_compile(model, cfg.train.compile)
        self.module = model
        self.model = (
            DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
            if world.distributed
            else model
        )
        self.optimizer = build_optimizer(model, cfg.optim)
        self.plan = BatchPlan(len(self.bundle.train), cfg.train.batch_size, self.accum, world.world_size, cfg.train.seed)
        spe = self.plan.steps_per_epoch
        self.total_steps = total_steps(cfg.train, spe)
        self.warmup = warmup_steps(cfg.optim, spe, self.total_steps)
        self.step = TrainingStep(
            model, self.optimizer, cfg.optim, lambda step: scheduled_lr(cfg.optim, step, self.warmup, self.total_steps),
            lambda: autocast_context(self.device, cfg.train.precision), world, self._diverged,
        )

    # one optimizer step --------------------------------------------------------------------------

    def _diverged(self, value: float, what: str, step: int) -> None:
        """Stop with what became non-finite where, and what to do (`TrainingStep`'s check)."""
        last = latest_checkpoint(self.run_dir)
        keep = f"the last good checkpoint {last} is kept" if last else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"the {what} is {value} at step {step + 1} (epoch {step // self.plan.steps_per_epoch}); {keep}. "
            "Lower optim.lr, lengthen the warm-up or set optim.grad_clip, then rerun with --resume"
        )

    def _step(self, micro: list[tuple[torch.Tensor, torch.Tensor]], step: int) -> tuple[float, float | None]:
        """Forward, backward and update on this process's micro-batches; returns (loss, grad norm)."""
        micro = [(i.to(self.device, non_blocking=True), t.to(self.device, non_blocking=True)) for i, t in micro]
        if len(micro) == 1:
            value = self.step.backward(self.model, micro[0], step)
        else:
            value = self.step.backward_accumulated(self.model, micro, step)
        return value, self.step.update(step)

    # evaluation and checkpoints ------------------------------------------------------------------

    def _evaluate(self, step: int, on_eval: EvalCallback | None, on_eval_elsewhere: StepCallback | None) -> dict[str, float]:
        """Evaluate on process 0 with the generator states put back afterwards, so evaluating
        never changes the training trajectory."""
        from trainer.evaluation import evaluate

        metrics: dict[str, float] = {}
        if self.world.is_main:
            rng = capture_rng(self.device)
            e = self.cfg.eval
            metrics = evaluate(
                self.module, self.bundle, self.device, batch_size=e.batch_size, nmi_pairs=e.nmi_pairs,
                probe_C=e.probe_C, seed=self.cfg.train.seed, progress=self.cfg.train.progress,
                heldout_batch_size=e.heldout_batch_size,
            )
            restore_rng(rng, self.device)
            self.metrics.log(step, step / self.plan.steps_per_epoch, metrics)
            if on_eval is not None:
                on_eval(step, metrics)
        elif on_eval_elsewhere is not None:
            on_eval_elsewhere(step)
        barrier(self.world)
        return metrics

    def _save(self, step: int) -> None:
        state = {
            "step": step,
            "epoch": step // self.plan.steps_per_epoch,
            "step_in_epoch": step % self.plan.steps_per_epoch,
            "skipped": int(sum_over_ranks(self.skipped, self.world)),
        }
        save_checkpoint(self.run_dir, self.module, self.optimizer, state, self.world, self.cfg.train.keep_checkpoints)

    def _eval_due(self, step: int) -> bool:
        e, spe = self.cfg.eval, self.plan.steps_per_epoch
        return (
            step == self.total_steps
            or (e.every_steps is not None and step % e.every_steps == 0)
            or (e.every_epochs is not None and step % (e.every_epochs * spe) == 0)
        )

    # the run -------------------------------------------------------------------------------------

    def run(self, resume: Resume, on_eval: EvalCallback | None, on_eval_elsewhere: StepCallback | None = None) -> TrainResult:
        """A new run refuses a directory that holds one; a resumed one continues from the directory's last
        checkpoint, if any, and refuses changes to the keys in `RESUME_FIXED` (`trainer.rundir`)."""
        cfg, world = self.cfg, self.world
        run_dir = RunDir(self.run_dir)
        resuming = run_dir.check(cfg, resume, RESUME_FIXED, need_config=False)
        barrier(world)  # every process has looked before process 0 writes
        self._build()  # before writing anything: a bad policy or data source leaves no run directory
        with run_dir.lock() if world.is_main else contextlib.nullcontext():
            if world.is_main:
                run_dir.write_config(cfg)
            barrier(world)
            return self._train(resuming, on_eval, on_eval_elsewhere)

    def _train(self, resume: bool, on_eval: EvalCallback | None, on_eval_elsewhere: StepCallback | None) -> TrainResult:
        cfg, world = self.cfg, self.world
        self.metrics = MetricsWriter(self.run_dir, enabled=world.is_main)
        step, self.skipped = 0, 0
        checkpoint = latest_checkpoint(self.run_dir) if resume else None
        if checkpoint is not None:
            state = load_checkpoint(checkpoint, self.module, self.optimizer, world)
            step = state["step"]
            self.skipped = state["skipped"] if world.is_main else 0
        if resume:
            self.metrics.truncate_after(step)  # records of steps after the checkpoint are redone
        self.trained_seconds = trained_seconds(self.run_dir) if resume else 0.0
        spe, t = self.plan.steps_per_epoch, cfg.train
        if world.is_main:
            n_params = sum(p.numel() for p in self.module.parameters())
            where = f"resuming at step {step} from {checkpoint}" if checkpoint else "starting"
            print(
                f"{where}: {cfg.model.policy} ({cfg.model.size}, {n_params / 1e6:.2f}M params) for {self.total_steps} steps "
                f"({spe} per epoch, global batch {t.batch_size}, {world.world_size} process(es), {self.device}) -> {self.run_dir}",
                file=sys.stderr,
            )
        bar = tqdm(total=self.total_steps, initial=step, desc="train", unit="step", disable=not (world.is_main and t.progress))
        final: dict[str, float] = {}
        first_step = step
        last_log, last_time = step, time.perf_counter()
        try:
            while step < self.total_steps:
                epoch, start = divmod(step, spe)
                self.bundle.train.set_epoch(cfg.train.seed, epoch)
                loader = self.plan.loader(self.bundle.train, epoch, start, world.rank, t.num_workers, self.device.type == "cuda")
                batches = iter(loader)
                for _ in range(start, spe):
                    if step >= self.total_steps:
                        break
                    micro = []
                    for _ in range(self.accum):
                        images, tokens, skipped = next(batches)
                        self.skipped += skipped
                        if images.shape[0] == 0:
                            raise RuntimeError(
                                f"every image of a micro-batch failed to decode at step {step + 1}; "
                                "check the data source (see the warnings above)"
                            )
                        micro.append((images, tokens))
                    loss, grad_norm = self._step(micro, step)
                    step += 1
                    bar.update(1)
                    if step % t.log_every == 0 or step == self.total_steps:
                        now = time.perf_counter()
                        self.trained_seconds += now - last_time
                        self._log(step, loss, grad_norm, (step - last_log) * t.batch_size / max(now - last_time, 1e-9))
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
                        last_log, last_time = step, now
                    # Save first: a callback that reports a checkpoint with the evaluation finds this step's.
                    if step == self.total_steps or (t.checkpoint_every is not None and step % t.checkpoint_every == 0) or (
                        t.checkpoint_on_eval and self._eval_due(step)
                    ) or step in t.checkpoint_steps:
                        self._save(step)
                    if self._eval_due(step):
                        final = self._evaluate(step, on_eval, on_eval_elsewhere)
            if step == first_step:  # resumed a finished run: nothing trained, report its metrics again
                final = self._evaluate(step, on_eval, on_eval_elsewhere)
        finally:
            bar.close()
            self.metrics.close()
        return TrainResult(self.run_dir, step, final, chance_levels(self.bundle, self.cfg.eval.heldout_batch_size))

    def _log(self, step: int, loss: float, grad_norm: float | None, samples_per_s: float) -> None:
        values = {
            "train/loss": loss,
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/logit_scale": float(self.module.logit_scale.detach().exp()),
            "train/skipped": int(sum_over_ranks(self.skipped, self.world)),
            "train/samples_per_s": samples_per_s,
            TRAINED_SECONDS: round(self.trained_seconds, 3),
        }
        if grad_norm is not None:
            values["train/grad_norm"] = grad_norm
        self.metrics.log(step, step / self.plan.steps_per_epoch, values)
