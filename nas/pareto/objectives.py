"""The cost objectives of a policy, beside the held-out metric that training gives: total parameters,
FLOPs per image-text pair and forward-step latency. They depend on the policy alone, so a trial
measures them once, before it trains, on a freshly built model."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from search_spaces import SharingPolicy, build_model, count_params, get_preset, get_size
from trainer.evaluation.cost import count_flops, measure_latency
from trainer.typed_config import ConfigError

COSTS = ("params", "flops", "latency")
"""Total parameters, FLOPs per image-text pair, median forward-step latency in seconds."""
Cost = Literal["params", "flops", "latency"]
DEFAULT_REFERENCE_POLICY = "clip-t768"
"""params and flops default to twice this all-specific policy's value as the reference point."""


@dataclass
class LatencyConfig:
    """The latency objective: the median of `steps` timed forward steps of `batch` pairs (after
    `warmup` untimed ones) on the trial's training device, at `precision`."""

    batch: int = 16
    """Pairs per timed forward step."""
    steps: int = 7
    """Timed steps; the latency is their median."""
    warmup: int = 2
    """Untimed steps before them."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """The precision the steps run at (bf16: autocast)."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.steps < 1 or self.warmup < 0:
            raise ConfigError(f"objective.latency: need batch >= 1, steps >= 1, warmup >= 0, got {self.batch}, {self.steps}, {self.warmup}")


def measure_costs(policy: SharingPolicy, size: str, costs: Sequence[str], latency: LatencyConfig,
                  device: torch.device | str = "cpu") -> tuple[dict[str, float], dict[str, Any]]:
    """The values of `costs` for `policy` at `size`, and the latency record (batch, device, precision,
    every timed step) when latency is among them."""
    spec = get_size(size)
    values: dict[str, float] = {}
    record: dict[str, Any] = {}
    if "params" in costs:
        values["params"] = float(count_params(policy, size).total)
    if "flops" in costs or "latency" in costs:
        torch.manual_seed(0)
        model = build_model(policy, size)
        if "flops" in costs:
            values["flops"] = float(count_flops(model, spec.image_size, spec.context_length))
        if "latency" in costs:
            measured = measure_latency(model, spec.image_size, spec.context_length, latency.batch, device, latency.precision,
                                       latency.steps, latency.warmup)
            values["latency"] = measured.median_s
            record = measured.to_dict()
    return values, record


def default_reference(size: str, costs: Sequence[str]) -> dict[str, float]:
    """Twice the all-specific policy's parameters and FLOPs (latency has no machine-free default)."""
    countable = [c for c in costs if c in ("params", "flops")]
    if not countable:
        return {}
    values, _ = measure_costs(get_preset(DEFAULT_REFERENCE_POLICY, size), size, countable, LatencyConfig())
    return {name: 2.0 * value for name, value in values.items()}
