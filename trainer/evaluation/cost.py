"""What a model costs to run: FLOPs per image-text pair, counted with `torch.utils.flop_counter`, and
the latency of one forward step, the median of several timed steps in one process.

FLOPs count one image and its caption through both towers (`encode_image` + `encode_text`), the
similarity of the pair excluded; a multiply-add is 2 FLOPs (the flop counter's convention), and
causal attention is counted dense, as the kernels compute it. PyTorch's counter has no formula for
the CPU flash-attention kernel, so it is given the one the counter uses for the CUDA kernels.
"""
from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

Clock = Callable[[], float]


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
"""The kernel `scaled_dot_product_attention` runs on CPU, counted with the counter's SDPA formula."""


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=CPU_SDPA)


def dummy_pair(image_size: int, context_length: int, batch: int = 1, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random images and full-length token sequences (end-of-text last)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator)
    tokens = torch.randint(1, 1000, (batch, context_length), generator=generator)
    tokens[:, -1] = 49407
    return images.to(device), tokens.to(device)


def count_flops(model: nn.Module, image_size: int, context_length: int) -> int:
    """FLOPs of one image-text pair through both towers."""
    images, tokens = dummy_pair(image_size, context_length)
    model = model.cpu()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), flop_counter() as counter:
            model.encode_image(images)
            model.encode_text(tokens)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Latency:
    """The median seconds of `steps` timed forward steps (after `warmup` untimed ones) of `batch` pairs."""

    median_s: float
    steps: int
    warmup: int
    batch: int
    device: str
    precision: str
    times_s: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["times_s"] = list(self.times_s)
        return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def measure_latency(
    model: nn.Module, image_size: int, context_length: int, batch: int, device: torch.device | str, precision: str = "fp32",
    steps: int = 5, warmup: int = 1, clock: Clock = time.perf_counter,
) -> Latency:
    """Time `steps` forward steps (no gradient) at `precision` (`fp32` or `bf16` autocast) and keep
    their median, which a stray slow step (a page fault, another process) does not move. `clock` is
    the timer (injectable for tests)."""
    if steps < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"latency: need steps >= 1, warmup >= 0 and batch >= 1, got {steps}, {warmup}, {batch}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"latency.precision: {precision!r} must be fp32 or bf16")
    device = torch.device(device)
    model = model.to(device).eval()
    images, tokens = dummy_pair(image_size, context_length, batch, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for _ in range(warmup + steps):
            sync()
            start = clock()
            model(images, tokens)
            sync()
            times.append(clock() - start)
    timed = tuple(times[warmup:])
    return Latency(statistics.median(timed), steps, warmup, batch, device_name(device), precision, timed)
