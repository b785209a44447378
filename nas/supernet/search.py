"""The Gumbel search loop: train the supernet's weights and gates alternately (first-order bi-level),
log diagnostics every epoch (`nas.supernet.diagnostics`), derive the policy (`nas.supernet.derive`),
optionally retrain it. The gate space is `search_spaces/gate_space.py`, the supernet
`nas/supernet/model.py`, the gate math `nas/supernet/gates.py`.

One weight step: a batch of the training split through the path(s) of this step (fair warm-up:
uniform paths; `fairness: strict`: two complementary uniform paths on the two halves of the batch;
otherwise the path the gates sample), AdamW with the trainer's recipe and schedule.
One architecture step (after the warm-up, every `arch_every` weight steps): a batch of the held-out
architecture split through one hard Gumbel sample, the gate logits' gradient through the
straight-through weights (plus the budget term), Adam (decoupled weight decay) on the logits only.

Gate samples are a function of (seed, step), so every process samples the same path; gradients are
averaged over processes explicitly (the unsampled paths have no gradient, and every process skips
the same ones, which DDP's bucketed reduction cannot express without `find_unused_parameters`),
together with the running statistics of the BatchNorms that ran (conv stem, parallel branch,
adapters; see `trainer.distributed.BatchNormStats`), so every process holds the same supernet.
Process 0 derives the policy while the others wait (`trainer.distributed.run_on_main`, up to
`derive.wait_hours`).

Options (see `SearchSection`): sandwich paths, paths held for K steps, whole-batch paths, soft
LayerNorm gates, weight entanglement (`space.entangle`), decoupled weight training with an
evolutionary derivation, a few-shot split on one gate (the parent trains up to the split; each
child then continues from the parent's weights with the gate fixed, one after the other; its
weights go to `supernet.GATE=OPTION.safetensors` and `weights_file` finds a policy's child), and
fine-tuned scoring of the candidates (`derive.finetune_steps`).

Run directory: see `nas.supernet.rundir`; the resumable state is saved every
`train.checkpoint_every` steps and at the end of each training segment (weights, gate logits, both
optimizers, the budget multiplier, the step and the epoch's running losses); gate samples and batch
order are functions of (seed, step), so a resumed search continues exactly.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from search_spaces import ARCH_FILE, POLICY_FILE, ArchRecord
from search_spaces.gate_space import SPECIFIC_OPTION
from trainer import atomic
from trainer.acceleration import enable_tf32
from trainer.config import ModelConfig, TrainConfig
from trainer.data import build_data
from trainer.distributed import BatchNormStats, World, average_over_ranks_, barrier, init_distributed, mean_over_ranks, run_on_main, shutdown
from trainer.loop import TrainingDiverged, seed_everything, train
from trainer.metrics import MetricsWriter
from trainer.optim import build_optimizer, scheduled_lr, warmup_steps
from trainer.rundir import RunDir
from trainer.sampler import BatchPlan
from trainer.step import TrainingStep, autocast_context, forward_loss
from trainer.typed_config import ConfigError

from nas.scoring import materialize
from nas.supernet.config import GumbelConfig
from nas.supernet.derive import derive_policy
from nas.supernet.diagnostics import epoch_metrics, shared_path
from nas.supernet.gates import BudgetTerm, GateSample, gate_generator, probabilities, sample_hard, temperature_at, uniform_choices
from nas.supernet.rundir import (
    PARENT_FILE, SEARCH_STATE_FILE, build_space, build_supernet, read_search_state, save_child, save_supernet, write_search_state,
)

WEIGHT_STREAM, ARCH_STREAM = 0, 1


@dataclass
class GumbelSearchResult:
    run_dir: Path
    arch: ArchRecord | None
    """The derived architecture (None on the processes other than the main one)."""
    seconds: float
    resumed_from: int | None = None
    """The (global) step a resumed search continued from; None for a search that started at step 0."""


def run_gumbel_search(cfg: GumbelConfig, out_dir: str | Path, retrain: bool | None = None, resume: bool = False,
                      on_saved: Callable[[int], None] | None = None) -> GumbelSearchResult:
    """Search into `out_dir` (refused when it already holds a search, unless `resume` continues it from
    its last saved state); under torchrun every process calls this. `on_saved(step)` runs on process 0
    after each resumable state the training loop saves (step: the global step it holds)."""
    world = init_distributed(cfg.train.device)
    try:
        return GumbelSearch(cfg, Path(out_dir), world, resume, on_saved).run(cfg.derive.retrain if retrain is None else retrain)
    finally:
        shutdown(world)


class GumbelSearch:
    """One search: the supernet, its gate logits, both optimizers, the data and the schedule."""

    def __init__(self, cfg: GumbelConfig, out_dir: Path, world: World, resume: bool = False,
                 on_saved: Callable[[int], None] | None = None) -> None:
        self.cfg, self.out, self.world, self.device, self.resume = cfg, out_dir, world, world.device, resume
        self.on_saved = on_saved
        self.run_dir = RunDir(out_dir, "search", markers=())
        self.run_dir.check(cfg, resume, fixed=())  # a resumed search's config was resolved by the caller (`--allow-changes`)
        if cfg.train.num_threads is not None:
            torch.set_num_threads(cfg.train.num_threads)
        enable_tf32(self.device)
        seed_everything(cfg.train.seed)
        self.space = build_space(cfg)
        self.supernet = build_supernet(cfg).to(self.device)
        self.norm_stats = BatchNormStats(self.supernet)
        layers = range(self.space.size.layers)
        soft = cfg.search.ln_gates == "soft"
        self.soft_gates = frozenset(self.space.layer_gate(i, sub) for i in layers for sub in ("ln1", "ln2")) if soft else frozenset()
        self.logits = torch.nn.Parameter(torch.zeros(self.space.num_gates, 2, device=self.device))
        self.cost = self.supernet.cost_model()
        s, t = cfg.search, cfg.train
        self.budget = self._budget(s.budget_params)
        size = self.space.size
        self.bundle = build_data(cfg.data, size.image_size, size.context_length)
        self.weight_opt = build_optimizer(self.supernet, cfg.optim)
        self.arch_opt = torch.optim.AdamW([self.logits], lr=s.arch_lr, betas=s.arch_betas, weight_decay=s.arch_weight_decay)
        self.plan = BatchPlan(len(self.bundle.train), t.batch_size, 1, world.world_size, t.seed)
        arch_batch = min(s.arch_batch_size or t.batch_size, len(self.bundle.arch) // world.world_size * world.world_size)
        self.arch_plan = BatchPlan(len(self.bundle.arch), arch_batch, 1, world.world_size, t.seed + 1)
        spe = self.plan.steps_per_epoch
        self.total_steps = t.steps if t.steps is not None else t.epochs * spe
        self.lr_warmup = warmup_steps(cfg.optim, spe, self.total_steps)
        self.search_warmup = min(self.total_steps, round(s.warmup_epochs * spe))
        self.split_gate, self.force = None, {}
        if s.few_shot_gate is not None:
            names = self.space.gate_names()
            if s.few_shot_gate not in names:
                raise ConfigError(f"search.few_shot_gate: {s.few_shot_gate!r} is not a gate of this space; choose e.g. {names[-1]!r}, 'es' or {names[0]!r}")
            self.split_gate = names.index(s.few_shot_gate)
        self.split_step = min(self.total_steps, round(s.few_shot_epochs * spe))
        self.autocast = lambda: autocast_context(self.device, t.precision)
        self.step = TrainingStep(
            self.supernet, self.weight_opt, cfg.optim, lambda step: scheduled_lr(cfg.optim, step, self.lr_warmup, self.total_steps),
            self.autocast, world, self._weights_diverged,
        )

    def _budget(self, target: int | None) -> BudgetTerm | None:
        if target is None:
            return None
        low, high = self.cost.extremes()
        if target < low:
            raise ConfigError(f"search.budget {target:,} is below the smallest policy in the space ({low:,} parameters); raise it")
        return BudgetTerm(target, high - low, self.cfg.search.budget_mode, self.cfg.search.budget_weight)

    def _batches(self, dataset, plan: BatchPlan, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches of `dataset` from batch `start` on, epoch after epoch, in the plan's deterministic order."""
        epoch, offset = divmod(start, plan.steps_per_epoch)
        while True:
            dataset.set_epoch(self.cfg.train.seed, epoch)
            loader = plan.loader(dataset, epoch, offset, self.world.rank, self.cfg.train.num_workers, self.device.type == "cuda")
            for images, tokens, _ in loader:
                yield images.to(self.device, non_blocking=True), tokens.to(self.device, non_blocking=True)
            epoch, offset = epoch + 1, 0

    def _check(self, value: float, what: str, step: int) -> None:
        if not math.isfinite(value):
            raise TrainingDiverged(f"{what} is {value} at step {step + 1}; lower optim.lr or search.arch_lr and rerun")

    def _weights_diverged(self, value: float, what: str, step: int) -> None:
        """`TrainingStep`'s check of a weight step."""
        self._check(value, f"the weights' {what}", step)

    def is_arch_step(self, step: int) -> bool:
        s = self.cfg.search
        return s.mode == "joint" and step >= self.search_warmup and (step - self.search_warmup) % s.arch_every == 0

    def _weight_paths(self, step: int) -> list[list[int]]:
        s, n = self.cfg.search, self.space.num_gates
        generator = gate_generator(self.cfg.train.seed, step // s.path_every, WEIGHT_STREAM)
        if s.fairness == "strict":
            choices = uniform_choices(n, generator)
            paths = [choices, [1 - c for c in choices]]
        elif step < self.search_warmup or s.mode == "decoupled":
            paths = [uniform_choices(n, generator)]
        else:
            paths = [sample_hard(self.logits, 1.0, generator, differentiable=False).choices]
        if s.sandwich:
            paths += [shared_path(self.space).choices, [SPECIFIC_OPTION] * n]
        return [self._forced(path) for path in paths]

    def _forced(self, choices: list[int]) -> list[int]:
        """`choices` with the current few-shot child's split gate set to its option."""
        return [self.force.get(g, c) for g, c in enumerate(choices)]

    def _soft(self, detach: bool) -> torch.Tensor | None:
        """The LayerNorm gates' mixing probabilities (None unless `ln_gates: soft`)."""
        if not self.soft_gates:
            return None
        probs = probabilities(self.logits)
        return probs.detach() if detach else probs

    def _sync(self, grads: list[torch.Tensor]) -> None:
        """Average `grads` (every process holds the same set) and the running statistics of the
        BatchNorms that ran since the last call over processes, in one collective."""
        if self.world.distributed:
            average_over_ranks_(grads + self.norm_stats.ran(), self.world)

    def weight_step(self, images: torch.Tensor, tokens: torch.Tensor, step: int) -> float:
        paths = self._weight_paths(step)
        if self.cfg.search.path_batch == "split":
            chunks = list(zip(images.chunk(len(paths)), tokens.chunk(len(paths))))
        else:
            chunks = [(images, tokens)] * len(paths)
        total, soft = 0.0, self._soft(detach=True)
        for choices, chunk in zip(paths, chunks):
            self.supernet.route(GateSample(choices), soft, self.soft_gates)
            total += self.step.backward(self.supernet, chunk, step, parts=len(paths))
        params = [p for p in self.supernet.parameters() if p.grad is not None]
        self._sync([p.grad for p in params])
        self.step.update(step, params)
        return total

    def temperature(self, step: int) -> float:
        s = self.cfg.search
        span = max(1, self.total_steps - self.search_warmup - 1)
        return temperature_at((step - self.search_warmup) / span, s.tau_start, s.tau_end, s.tau_schedule)

    def arch_step(self, images: torch.Tensor, tokens: torch.Tensor, step: int) -> float:
        sample = sample_hard(self.logits, self.temperature(step), gate_generator(self.cfg.train.seed, step, ARCH_STREAM))
        if self.force:  # a few-shot child: its split gate is fixed and gets no gradient
            sample.choices = self._forced(sample.choices)
            sample.weights = sample.weights.clone()
            sample.weights[list(self.force)] = 1.0
        self.supernet.route(sample, self._soft(detach=False), self.soft_gates)
        loss = forward_loss(self.supernet, (images, tokens), self.autocast, self.world)
        value = mean_over_ranks(loss, self.world).item()
        self._check(value, "the architecture loss", step)
        objective = loss
        expected = self.cost.expected(probabilities(self.logits))
        if self.budget is not None:
            objective = objective + self.budget(expected)
        (grad,) = torch.autograd.grad(objective, [self.logits])
        self._sync([grad])
        self.logits.grad = grad
        self.arch_opt.step()
        self.arch_opt.zero_grad(set_to_none=True)
        if self.budget is not None:
            self.budget.update(expected)
        return value

    def _diagnostics(self, tau: float, losses: dict[str, list[float]], probe: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
        lam = self.budget.lam if self.budget is not None else None
        return epoch_metrics(self.supernet, self.logits, self.cost, tau, lam, losses, probe)

    def arch_steps_before(self, step: int) -> int:
        """How many architecture steps the search has taken before `step` (where the arch batches stand)."""
        return sum(self.is_arch_step(k) for k in range(step))

    def segments(self) -> list[tuple[int | None, int, int]]:
        """(option the split gate is fixed to, first step, end step) of each training segment: one
        segment without few-shot; with it the parent up to the split, then one child per option of
        the split gate, each continuing the parent's schedule from the parent's weights."""
        if self.split_gate is None:
            return [(None, 0, self.total_steps)]
        return [(None, 0, self.split_step)] + [(option, self.split_step, self.total_steps) for option in (0, 1)]

    def save_state(self, step: int, losses: dict[str, list[float]], segment: int = 0, file: str = SEARCH_STATE_FILE) -> None:
        """The resumable state after `step` steps of training segment `segment` (process 0)."""
        write_search_state(self.out / file, {
            "segment": segment, "step": step, "supernet": self.supernet.state_dict(), "logits": self.logits.detach().cpu(),
            "weight_opt": self.weight_opt.state_dict(), "arch_opt": self.arch_opt.state_dict(),
            "budget": self.budget.state() if self.budget is not None else None, "losses": losses,
        })

    def load_state(self, file: str = SEARCH_STATE_FILE) -> tuple[int, int, dict[str, list[float]]]:
        """Restore a saved state; returns its (segment, step, running losses)."""
        state = read_search_state(self.out / file, self.device)
        self.supernet.load_state_dict(state["supernet"])
        with torch.no_grad():
            self.logits.copy_(state["logits"].to(self.device))
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        if self.budget is not None and state["budget"] is not None:
            self.budget.load_state(state["budget"])
        return int(state.get("segment", 0)), int(state["step"]), state["losses"]

    def run(self, retrain: bool) -> GumbelSearchResult:
        """Search, derive and (with `retrain`) retrain, process 0 holding the run directory's lock."""
        with self.run_dir.lock() if self.world.is_main else contextlib.nullcontext():
            return self._run(retrain)

    def _run(self, retrain: bool) -> GumbelSearchResult:
        cfg, world, start = self.cfg, self.world, time.perf_counter()
        barrier(world)  # every process has checked the run directory before process 0 fills it
        if world.is_main and not self.resume:
            self.run_dir.write_config(cfg)
        barrier(world)
        losses: dict[str, list[float]] = {"train_loss": [], "arch_loss": []}
        first_segment, first = 0, 0
        if self.resume:
            first_segment, first, losses = self.load_state()
        segments = self.segments()
        metrics = MetricsWriter(self.out, enabled=world.is_main)
        if self.resume and world.is_main:
            metrics.truncate_after(self._global_step(first_segment, first))
        spe, t = self.plan.steps_per_epoch, cfg.train
        n = cfg.search.diagnostics_batch
        probe = [(i.to(self.device), k.to(self.device)) for i, k in materialize(self.bundle.train, n, n)][0] if n else None
        total = self._global_step(len(segments) - 1, self.total_steps)
        if world.is_main:
            s = cfg.search
            print(
                f"gumbel search: {self.space.num_gates} gates at size {self.space.size.name}, {total} steps "
                f"({spe} per epoch, warm-up {self.search_warmup}, mode {s.mode}, fairness {s.fairness}"
                f"{', sandwich' if s.sandwich else ''}{', soft LN gates' if self.soft_gates else ''}"
                f"{', entangled' if cfg.space.entangle else ''}"
                f"{f', few-shot on {s.few_shot_gate} after step {self.split_step}' if self.split_gate is not None else ''}) -> {self.out}"
                + (f"; resuming at step {self._global_step(first_segment, first)}" if self.resume else ""),
                file=sys.stderr,
            )
            if first == 0:
                metrics.log(0, 0.0, self._diagnostics(self.temperature(0), {}, probe))
        every = t.checkpoint_every
        bar = tqdm(total=total, initial=self._global_step(first_segment, first), desc="search", unit="step",
                   disable=not (world.is_main and t.progress))
        try:
            for index in range(first_segment, len(segments)):
                option, begin, end = segments[index]
                resuming = index == first_segment and first > begin
                if option is not None and not resuming:
                    self.load_state(PARENT_FILE)  # every child starts from the parent
                step_from = first if resuming else begin
                self.force = {} if option is None else {self.split_gate: option}
                train_batches = self._batches(self.bundle.train, self.plan, step_from)
                arch_batches = self._batches(self.bundle.arch, self.arch_plan, self.arch_steps_before(step_from))
                for step in range(step_from, end):
                    losses["train_loss"].append(self.weight_step(*next(train_batches), step))
                    if self.is_arch_step(step):
                        losses["arch_loss"].append(self.arch_step(*next(arch_batches), step))
                    bar.update(1)
                    done, logged = step + 1, self._global_step(index, step + 1)
                    if world.is_main and (done % spe == 0 or done == end):
                        values = self._diagnostics(self.temperature(step), losses, probe)
                        if option is not None:
                            values["search/few_shot_child"] = option
                        metrics.log(logged, logged / spe, values)
                        losses = {key: [] for key in losses}
                    if world.is_main and ((every and done % every == 0) or done == end):
                        self.save_state(done, losses, index)
                        if self.on_saved is not None:
                            self.on_saved(logged)
                if world.is_main and self.split_gate is not None:
                    if option is None:
                        self.save_state(end, losses, index, PARENT_FILE)
                    else:
                        save_child(self.out, self.cfg.search.few_shot_gate, option, self.supernet, self.logits)
                    if index + 1 < len(segments):  # the next segment starts fresh (a resume lands there)
                        self.save_state(segments[index + 1][1], {key: [] for key in losses}, index + 1)
                barrier(world)
        finally:
            bar.close()
            metrics.close()
        search_seconds = time.perf_counter() - start
        arch = run_on_main(world, lambda: self._save_and_derive(search_seconds), cfg.derive.wait_hours * 3600)
        if retrain:
            arch = self._retrain(arch)
        return GumbelSearchResult(self.out, arch, search_seconds, self._global_step(first_segment, first) if self.resume else None)

    def _global_step(self, segment: int, step: int) -> int:
        """Steps taken in all segments before `step` of `segment` (children run one after the other)."""
        if segment <= 1:
            return step
        return step + (segment - 1) * (self.total_steps - self.split_step)

    def _save_and_derive(self, search_seconds: float) -> ArchRecord:
        save_supernet(self.out, self.supernet, self.logits, self.cfg)
        return self._derive(search_seconds)

    def _derive(self, search_seconds: float) -> ArchRecord:
        return derive_policy(self.cfg, self.out, self.supernet, self.cost, self.logits, self.bundle, self.device, search_seconds)

    def _retrain(self, arch: ArchRecord | None) -> ArchRecord | None:
        cfg = self.cfg
        train_cfg = TrainConfig(
            model=ModelConfig(policy=str(self.out / POLICY_FILE), size=cfg.space.size),
            data=cfg.data, optim=cfg.optim, train=cfg.train, eval=cfg.eval,
        )
        result = train(train_cfg, self.out / "retrain")
        if self.world.is_main and arch is not None:
            arch.metrics.update({f"retrain/{k}": v for k, v in result.metrics.items()})
            atomic.write_with(self.out / ARCH_FILE, arch.save)
        return arch
