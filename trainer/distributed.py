"""Process-group setup for torchrun (NCCL on GPU, gloo on CPU) and the collectives the trainer needs.

A single process (no torchrun) is a world of size 1 and every helper here is then a no-op, so the
training loop has one code path.
"""
from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed._functional_collectives import all_gather_single_autograd


@dataclass(frozen=True)
class World:
    """Where this process sits: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    """Whether `init_distributed` created the process group (and `shutdown` may destroy it)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from trainer.typed_config import ConfigError

        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; set train.device=cpu or auto")
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto", timeout_s: float = 1800.0) -> World:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK).

    Without those variables this is a single process and nothing is initialised; a process group
    the caller already initialised (Ray Train's) is used as it is, on the CUDA device the caller
    made current (several processes may share one GPU, so LOCAL_RANK need not name it).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    caller_group = dist.is_available() and dist.is_initialized()
    cuda_index = torch.cuda.current_device() if caller_group and torch.cuda.is_available() else local_rank
    device = pick_device(device_preference, cuda_index)
    owns_group = world_size > 1 and not caller_group
    if owns_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return World(rank, world_size, local_rank, device, owns_group)


def shutdown(world: World) -> None:
    """Destroy the process group if `init_distributed` created it (a caller's own group stays)."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


T = TypeVar("T")


def run_on_main(world: World, work: Callable[[], T], timeout_s: float) -> T | None:
    """`work()` on process 0 while the other processes wait for it, up to `timeout_s`; returns its
    result on process 0 and None on the others.

    The wait is a barrier of a gloo group made for it with its own timeout, not one of the default
    group, whose timeout (`init_distributed`, 30 minutes) a long piece of work on process 0 (a
    B/32 derivation scoring and fine-tuning candidates) can outlast, and which NCCL enforces by
    aborting the process. Other ways to wait, and why not: raising the default group's timeout
    would let a hung training collective hang that long too; polling for a file process 0 writes
    needs a filesystem every node shares; splitting the work over processes does not fit work that
    is sequential (evolution's generations, the candidates' fine-tunes one after another). A gloo
    barrier waits on the host (NCCL's watchdog sees no pending collective), and when process 0
    dies torchrun stops the others at once, so `timeout_s` only bounds a process 0 that hangs.
    """
    if not world.distributed:
        return work()
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
    try:
        result = work() if world.is_main else None
        dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)
    return result


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The average of a tensor over all processes (a detached copy)."""
    value = value.detach().clone()
    if world.distributed:
        dist.all_reduce(value)
        value /= world.world_size
    return value


def average_over_ranks_(tensors: list[torch.Tensor], world: World) -> None:
    """Average `tensors` in place over processes in one collective; every process passes tensors of
    the same shapes and dtype, in the same order."""
    if not world.distributed or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world.world_size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


class BatchNormStats:
    """The running statistics of a model's BatchNorms, for averaging over processes.

    Each process normalises with its own part of the batch, so its running mean and variance follow
    its own data and the processes drift apart unless something syncs them. DDP's default
    (`broadcast_buffers`) copies process 0's buffers to every process before each forward; timm's
    `distribute_bn(reduce=True)` averages them over processes, which with equal parts of the batch
    makes the running mean exactly the one a single process with the whole batch keeps. This class
    serves the averaging: `ran()` returns the statistics of the BatchNorms that ran in training mode
    since its last call (`num_batches_tracked` moved). Only those are averaged, so a module on an
    unsampled supernet path keeps its value bit for bit (averaging equal values over 3 processes
    can round). Every process must run the same modules between calls.
    """

    def __init__(self, model: nn.Module) -> None:
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        self.seen = self._counts()

    def _counts(self) -> list[int]:
        return torch.stack([m.num_batches_tracked for m in self.norms]).tolist() if self.norms else []

    def ran(self) -> list[torch.Tensor]:
        counts = self._counts()
        moved = [m for m, now, before in zip(self.norms, counts, self.seen) if now != before]
        self.seen = counts
        return [t for m in moved for t in (m.running_mean, m.running_var)]


def sum_over_ranks(value: float, world: World) -> float:
    """The sum of a Python number over all processes."""
    if not world.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(total)
    return float(total.item())


def min_over_ranks(value: float, world: World) -> float:
    """The smallest of a Python number over all processes."""
    if not world.distributed:
        return value
    least = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(least, op=dist.ReduceOp.MIN)
    return float(least.item())


def gather_rows(x: torch.Tensor, world: World) -> tuple[torch.Tensor, int]:
    """Concatenate every process's rows of `x` in rank order, with gradients flowing back to each
    process's own rows; also return where this process's rows start.

    Processes may hold different numbers of rows (images that failed to decode are dropped), so the
    row counts are exchanged first and the rows padded to a common length for the collective.
    """
    if not world.distributed:
        return x, 0
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world.world_size)]
    dist.all_gather(counts, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    sizes = [int(c.item()) for c in counts]
    padded = F.pad(x, (0, 0, 0, max(sizes) - x.shape[0]))
    # The functional collective's backward reduce-scatters the gradient: each process gets the sum over
    # processes of the gradient of its own rows.
    parts = all_gather_single_autograd(padded, gather_dim=0, group=dist.group.WORLD).chunk(world.world_size)
    gathered = torch.cat([part[:n] for part, n in zip(parts, sizes)])
    return gathered, sum(sizes[: world.rank])
