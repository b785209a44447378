"""Gate math of the Gumbel supernet: hard straight-through Gumbel-softmax (GDAS, Dong & Yang 2019),
temperature schedules, entropy, and the parameter-budget term.

Every gate is binary (option 0 / option 1) and all gates of a supernet live in one `[G, 2]` logit
tensor. All of it runs in fp32 with autocast off, whatever the surrounding precision.

Straight-through weight: the sampled option `k` gets weight `1 + (p_k - p_k.detach())`, which is
GDAS's `one_hot - p.detach() + p` at the sampled entry, reordered so the forward value is exactly
1.0 (`x - x` is exactly 0 in IEEE arithmetic) while the gradient reaching the logits is that of
`p_k = softmax((logits + gumbel) / tau)_k`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

EPS = 1e-6


class ArchitectureDiverged(RuntimeError):
    """The gate logits or their softmax became non-finite."""


@dataclass
class GateSample:
    """One hard sample of every gate: `choices[g]` in {0, 1}; `weights[g]` is the straight-through
    weight of the chosen option (forward value 1.0), or None when no gradient should reach the logits."""

    choices: list[int]
    weights: torch.Tensor | None = None


def _fp32(logits: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(logits).all():
        raise ArchitectureDiverged(
            "gate logits are not finite; lower search.arch_lr or raise search.arch_weight_decay and rerun"
        )
    return logits.float()


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise from a clamped uniform, so it is never +-inf (CPU generator: the same
    numbers on every device and process for one seed)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float32).clamp_(EPS, 1.0 - EPS)
    return -torch.log(-torch.log(u))


def sample_hard(logits: torch.Tensor, tau: float, generator: torch.Generator, differentiable: bool = True) -> GateSample:
    """Sample one option per gate: `argmax(logits + gumbel)`, with a straight-through weight whose
    gradient is that of `softmax((logits + gumbel) / tau)` at the sampled option."""
    if not tau > 0:
        raise ValueError(f"the Gumbel temperature must be > 0, got {tau}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits32 = _fp32(logits)
        noise = gumbel_noise(logits32.shape, generator).to(logits32.device)
        probs = torch.softmax((logits32 + noise) / tau, dim=-1)
        if not torch.isfinite(probs).all():
            raise ArchitectureDiverged(f"the Gumbel softmax at temperature {tau} is not finite; raise search.tau_end")
        index = probs.detach().argmax(dim=-1)
        choices = index.tolist()
        if not differentiable:
            return GateSample(choices)
        picked = probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        return GateSample(choices, 1.0 + (picked - picked.detach()))


def uniform_choices(num_gates: int, generator: torch.Generator) -> list[int]:
    """Each gate's option uniformly at random (the fair warm-up's sampler)."""
    return torch.randint(0, 2, (num_gates,), generator=generator).tolist()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """`softmax(logits)` per gate in fp32 (the gate distribution itself, no noise, no temperature)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return torch.softmax(_fp32(logits), dim=-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each gate's distribution, `[G]` (ln 2 ~ 0.693 when undecided)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_p = torch.log_softmax(_fp32(logits), dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1)


def temperature_at(progress: float, start: float, end: float, schedule: Literal["linear", "exponential"] = "linear") -> float:
    """Temperature at `progress` in [0, 1] of the architecture phase: linear or geometric from `start` to `end`."""
    t = min(1.0, max(0.0, progress))
    if schedule == "linear":
        return start + (end - start) * t
    return start * (end / start) ** t


def gate_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A generator that is a function of (seed, step, stream) only, so every process samples the same
    gates at a step (required under DDP) and a rerun samples the same sequence."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 31 + stream) % 2**63)


class BudgetTerm:
    """Holds the expected parameter count at or below `target`.

    The excess is measured in units of the search space's span (`max_params - min_params`), so one
    weight means the same thing at every model size. `penalty`: `weight * relu(excess)`. `lagrange`:
    `lam * excess` with `lam >= 0` raised by dual ascent (`lam += weight * excess` after every
    architecture step) while over budget and lowered while under it.
    """

    def __init__(self, target: int, span: int, mode: Literal["penalty", "lagrange"], weight: float) -> None:
        if span <= 0:
            raise ValueError("the search space has a single parameter count; a budget cannot steer it")
        self.target, self.span, self.mode, self.weight = target, span, mode, weight
        self.lam = 0.0

    def excess(self, expected: torch.Tensor) -> torch.Tensor:
        return (expected - self.target) / self.span

    def __call__(self, expected: torch.Tensor) -> torch.Tensor:
        excess = self.excess(expected)
        if self.mode == "penalty":
            return self.weight * torch.relu(excess)
        return self.lam * excess

    def update(self, expected: torch.Tensor) -> None:
        """Dual ascent on the multiplier (lagrange mode only)."""
        if self.mode == "lagrange":
            self.lam = max(0.0, self.lam + self.weight * float(self.excess(expected.detach())))

    def state(self) -> dict[str, float]:
        return {"lambda": self.lam}

    def load_state(self, state: dict[str, float]) -> None:
        self.lam = float(state["lambda"])
