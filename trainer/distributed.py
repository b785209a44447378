"""Process-group setup for torchrun (NCCL on GPU, gloo on CPU) and the collectives the trainer needs.

A single process (no torchrun) is a world of size 1 and every helper here is then a no-op, so the
training loop has one code path.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
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
        from trainer.config import ConfigError

        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; set train.device=cpu or auto")
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto", timeout_s: float = 1800.0) -> World:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK).

    Without those variables this is a single process and nothing is initialised; a process group
    the caller already initialised is used as it is.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    owns_group = world_size > 1 and not dist.is_initialized()
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


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The average of a tensor over all processes (a detached copy)."""
    value = value.detach().clone()
    if world.distributed:
        dist.all_reduce(value)
        value /= world.world_size
    return value


def sum_over_ranks(value: float, world: World) -> float:
    """The sum of a Python number over all processes."""
    if not world.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(total)
    return float(total.item())


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
