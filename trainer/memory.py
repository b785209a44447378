"""Does a training step fit in one process's memory, and at which micro-batch (`train.micro_batch`)?

The estimate of one process's peak at micro-batch m (bytes):
- state: parameters x (4 weight + 4 gradient + 8 AdamW moments, fp32), + 4 for DDP's gradient
  buckets when there is more than one process;
- saved(m) = fixed + m x per_sample: what autograd saves for the backward pass, measured, not
  modelled: the model's forward at micro-batch 1 and 2 is traced with fake tensors (torch's
  `FakeTensorMode`: shapes and dtypes, no memory, no compute) on the model's device under the run's
  autocast, and every tensor saved for backward is counted once, by storage (saved-tensor hooks).
  `fixed` is what does not grow with the batch (autocast's bf16 copies of the weights). With
  activation checkpointing only the block inputs are saved, and the backward pass recomputes one
  block at a time, whose activations count once more;
- loss: the contrastive logits of the micro-batch against the global batch (two m x G fp32
  matrices and their log-softmax) and the cached features of the global batch.

A step fits when the estimate is at most `USABLE` of the process's memory (`train.memory_gb`, or
the device's: a GPU's total memory, the machine's RAM on CPU); the rest is left to the allocator's
fragmentation, the CUDA context and kernel workspaces. CUDA's attention kernels may save less than
the traced ones; `scripts/gpu_check.sh` sets the estimate beside the peak a GPU measures.

    python -m trainer.memory experiments/b32/msclip.yaml --processes 8 --memory-gb 80
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainer.config import TrainSection
from trainer.distributed import World, min_over_ranks
from trainer.typed_config import ConfigError

GB = 1e9
USABLE = 0.9
"""The part of a process's memory a step may use."""


@dataclass(frozen=True)
class StepMemory:
    """One process's memory during a training step, as a function of its micro-batch."""

    params: int
    state: int
    fixed: int
    per_sample: int
    global_batch: int
    embed_dim: int

    def at(self, micro_batch: int) -> int:
        loss = 16 * micro_batch * self.global_batch + 8 * self.global_batch * self.embed_dim
        return self.state + self.fixed + micro_batch * self.per_sample + loss


def _saved_bytes(model: nn.Module, batch: int, precision: str, checkpointing: bool) -> int:
    """Bytes of the tensors a training forward at `batch` saves for backward (parameters excluded), traced without compute."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.func import functional_call

    device = next(model.parameters()).device
    mode = FakeTensorMode()
    fake = {name: mode.from_tensor(t) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    weights = {t.untyped_storage()._cdata for t in fake.values()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage._cdata] = storage.nbytes()
        return t

    size = model.size
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    before = model.grad_checkpointing
    model.set_grad_checkpointing(checkpointing)
    try:
        with mode, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            images = torch.zeros(batch, 3, size.image_size, size.image_size, device=device)
            tokens = torch.ones(batch, size.context_length, dtype=torch.long, device=device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                functional_call(model, fake, (images, tokens))
    finally:
        model.set_grad_checkpointing(before)
    return sum(n for key, n in seen.items() if key not in weights)


def step_memory(model: nn.Module, train: TrainSection, processes: int) -> StepMemory:
    """The estimate for `model` (built, on its training device) trained with `train` on `processes` processes."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    state = params * (16 + (4 if processes > 1 else 0))
    ckpt = train.grad_checkpointing
    one, two = (_saved_bytes(model, b, train.precision, ckpt) for b in (1, 2))
    per_sample, fixed = two - one, 2 * one - two
    if ckpt:
        full = _saved_bytes(model, 2, train.precision, False) - _saved_bytes(model, 1, train.precision, False)
        per_sample += full // (2 * model.size.layers)  # one block of one tower recomputed at a time
    return StepMemory(params, state, fixed, per_sample, train.batch_size, model.size.embed_dim)


def device_memory(device: torch.device, memory_gb: float | None) -> int:
    """The memory one process may use: `train.memory_gb`, else the GPU's total memory or the machine's RAM."""
    if memory_gb is not None:
        return int(memory_gb * GB)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gb(n: float) -> str:
    return f"{n / GB:.3g} GB"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def configured_micro_batch(train: TrainSection, processes: int) -> int | None:
    """The micro-batch the config asks for (None: `auto`), checked against the per-process batch."""
    if train.batch_size % processes:
        raise ConfigError(f"train.batch_size {train.batch_size} is not divisible by {processes} processes; pick a multiple of {processes}")
    per_process = train.batch_size // processes
    if train.micro_batch == "auto":
        return None
    wanted = train.micro_batch if train.micro_batch is not None else per_process // train.accum_steps
    if per_process % wanted or per_process % train.accum_steps:
        raise ConfigError(f"train.micro_batch / accum_steps: the {per_process} pairs each of {processes} process(es) takes per step do not split "
                          f"into micro-batches of {wanted}; choose one of {', '.join(map(str, _divisors(per_process)))}, or auto")
    return wanted


def micro_batch_plan(train: TrainSection, memory: StepMemory, available: int, processes: int) -> tuple[int, int]:
    """(micro-batch, accumulation steps) of one process; a micro-batch that does not fit is a one-line
    `ConfigError` naming the fix."""
    per_process = train.batch_size // processes
    wanted = configured_micro_batch(train, processes)
    usable = USABLE * available
    fitting = [m for m in _divisors(per_process) if memory.at(m) <= usable]
    if wanted is None:
        wanted = max(fitting, default=None)
    if wanted is not None and memory.at(wanted) <= usable:
        return wanted, per_process // wanted
    at = wanted or 1
    need = f"a step at micro-batch {at} needs about {_gb(memory.at(at))} per process, more than the {_gb(usable)} usable of {_gb(available)}"
    if fitting:
        best = max(fitting)
        fix = f"set train.micro_batch=auto (it fits {best}, accumulating {per_process // best} micro-batches)"
    elif memory.at(0) > usable:
        fix = f"the parameters and their optimizer state alone take {_gb(memory.at(0))}: use a device with more memory or a smaller model"
    elif not train.grad_checkpointing:
        fix = "set train.grad_checkpointing=true (only the blocks' inputs are kept), or use a device with more memory"
    else:
        fix = "use a device with more memory or a smaller model"
    raise ConfigError(f"{need}: {fix}")


def fit_in_memory(train: TrainSection, model: nn.Module, world: World) -> tuple[int, str | None]:
    """The accumulation steps of this run and a line describing its memory estimate. The estimate is
    made and checked on CUDA, with `micro_batch: auto` and with `memory_gb` set; otherwise (CPU)
    the configured accumulation stands. Every process gets the same plan: the smallest memory of
    any process counts."""
    device = next(model.parameters()).device
    if device.type != "cuda" and train.micro_batch != "auto" and train.memory_gb is None:
        return train.batch_size // world.world_size // configured_micro_batch(train, world.world_size), None
    available = int(min_over_ranks(float(device_memory(device, train.memory_gb)), world))
    memory = step_memory(model, train, world.world_size)
    micro, accum = micro_batch_plan(train, memory, available, world.world_size)
    return accum, describe(memory, micro, accum, world.world_size, available)


def describe(memory: StepMemory, micro_batch: int, accum: int, processes: int, available: int) -> str:
    """One line for a config's comment and the training log."""
    return (f"{processes} process(es) x {_gb(available)}: micro-batch {micro_batch} x {accum} accumulation step(s), about "
            f"{_gb(memory.at(micro_batch))} per process ({memory.params / 1e6:.0f}M parameters: {_gb(memory.state)} of weights, gradients "
            f"and AdamW state; {memory.per_sample / 1e6:.3g} MB of activations per pair)")


def main(argv: Sequence[str] | None = None) -> int:
    from search_spaces import build_model
    from trainer.config import TrainConfig
    from trainer.typed_config import load_config, read_yaml

    parser = argparse.ArgumentParser(prog="python -m trainer.memory", description="The memory estimate of a training config.")
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--processes", type=int, default=1, help="data-parallel processes (GPUs) the global batch is split over")
    parser.add_argument("--memory-gb", type=float, required=True, help="memory of one process's device, e.g. 80 for an 80 GB GPU")
    parser.add_argument("--policy", default=None, help="estimate this policy instead of the config's model.policy")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = parser.parse_args(argv)
    try:
        sections = read_yaml(args.config)  # the model and its training; the data (often a path to fill in) play no part
        cfg = load_config({key: sections[key] for key in ("model", "train") if key in sections}, TrainConfig, args.overrides)
        model = build_model(args.policy or cfg.model.policy, cfg.model.size)
        train = cfg.train
        if train.precision == "auto":  # the run this estimates is on a GPU
            train.precision = "bf16"
        memory = step_memory(model, train, args.processes)
        available = int(args.memory_gb * GB)
        micro, accum = micro_batch_plan(train, memory, available, args.processes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(memory, micro, accum, args.processes, available))
    return 0


if __name__ == "__main__":
    sys.exit(main())
