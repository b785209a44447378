"""Gate math of the Gumbel supernet: straight-through sampling, temperature, entropy, budget."""
from __future__ import annotations

import math

import pytest
import torch

from nas.supernet.gates import (
    ArchitectureDiverged,
    BudgetTerm,
    entropy,
    gate_generator,
    gumbel_noise,
    sample_hard,
    temperature_at,
    uniform_choices,
)


def _uniforms(shape: tuple[int, int], seed: int) -> torch.Tensor:
    """The uniforms a generator seeded with `seed` yields first: what sample_hard turns into noise."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_hard_sample_is_argmax_of_noisy_logits_with_weight_exactly_one():
    u = _uniforms((4, 2), 3)
    torch.testing.assert_close(u, torch.tensor([[0.0043, 0.1056], [0.2858, 0.0270], [0.4716, 0.0601], [0.7719, 0.7437]]), atol=5e-5, rtol=0)
    # gumbel = -ln(-ln u): [[-1.6970, -0.8102], [-0.2250, -1.2847], [0.2856, -1.0337], [1.3511, 1.2170]]
    # logits + gumbel:     [[-1.1970, -0.8102], [ 1.7750,  0.6153], [-0.2144, -0.5337], [1.3511, 1.2170]]
    # so the choices are [1, 0, 0, 0]; without the noise they would be [0, 0, 1, tie].
    logits = torch.tensor([[0.5, 0.0], [2.0, 1.9], [-0.5, 0.5], [0.0, 0.0]], requires_grad=True)
    sample = sample_hard(logits, 0.7, torch.Generator().manual_seed(3))
    assert sample.choices == [1, 0, 0, 0]
    assert torch.equal(sample.weights.detach(), torch.ones(4))


def test_hard_samples_follow_the_gate_probabilities():
    """Gumbel-max: option 1 of logits [0, ln 3] is drawn with probability 3 / (1 + 3) = 0.75."""
    logits = torch.tensor([[0.0, math.log(3.0)]]).repeat(20_000, 1)
    choices = sample_hard(logits, 1.0, torch.Generator().manual_seed(0), differentiable=False).choices
    assert sum(choices) / len(choices) == pytest.approx(0.75, abs=0.015)  # binomial std 0.003


def test_straight_through_gradient_is_the_softmax_gradient_of_the_sampled_option():
    """d p_k / d logit_k = p_k (1 - p_k) / tau = -d p_k / d logit_other for a two-option gate."""
    tau = 0.5
    logits = torch.tensor([[0.3, -1.2], [2.0, 1.9], [-0.5, 0.5]], requires_grad=True)
    sample = sample_hard(logits, tau, torch.Generator().manual_seed(11))
    (sample.weights * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    u = _uniforms((3, 2), 11)
    torch.testing.assert_close(u, torch.tensor([[0.1490, 0.4866], [0.9857, 0.1684], [0.5839, 0.6936]]), atol=5e-5, rtol=0)
    # gumbel = -ln(-ln u) =
    # [[-0.6437, 0.3279], [4.2376, -0.5774], [0.6200, 1.0055]]; (logits + gumbel) / tau =
    # [[-0.6874, -1.7441], [12.4752, 2.6452], [0.2400, 3.0110]]: choices [0, 0, 1] with
    # p = sigmoid(gap) = [0.74206, 0.999946, 0.94109]; weight * p (1 - p) / tau = [0.38281, 0.000215, 0.33264]
    assert sample.choices == [0, 0, 1]
    expected = torch.tensor([[0.38281, -0.38281], [0.000215, -0.000215], [-0.33264, 0.33264]])
    torch.testing.assert_close(logits.grad, expected, atol=2e-5, rtol=1e-3)


def test_gate_math_is_fp32_under_autocast_and_guards_non_finite_logits():
    logits = torch.zeros(5, 2, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sample = sample_hard(logits, 1.0, torch.Generator().manual_seed(0))
    assert sample.weights.dtype == torch.float32
    with pytest.raises(ArchitectureDiverged, match="arch_lr"):
        sample_hard(torch.tensor([[0.0, float("nan")]]), 1.0, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="temperature"):
        sample_hard(torch.zeros(1, 2), 0.0, torch.Generator())
    assert torch.isfinite(gumbel_noise((200_000,), torch.Generator().manual_seed(1))).all()


def test_same_seed_and_step_give_the_same_choices_on_every_process():
    a = uniform_choices(54, gate_generator(7, 12, 0))
    b = uniform_choices(54, gate_generator(7, 12, 0))
    c = uniform_choices(54, gate_generator(7, 13, 0))
    assert a == b and a != c
    assert 10 < sum(a) < 44


def test_temperature_schedules_and_entropy():
    assert temperature_at(0.0, 10.0, 0.1) == 10.0
    assert temperature_at(1.0, 10.0, 0.1) == pytest.approx(0.1)
    assert temperature_at(0.5, 10.0, 0.1) == pytest.approx(5.05)
    assert temperature_at(0.5, 10.0, 0.1, "exponential") == pytest.approx(1.0)
    assert temperature_at(2.0, 10.0, 0.1) == pytest.approx(0.1)
    h = entropy(torch.tensor([[0.0, 0.0], [0.0, 3.0], [50.0, -50.0]]))
    assert h[0].item() == pytest.approx(math.log(2))
    assert h[0] > h[1] > h[2] >= 0


def test_budget_penalty_and_lagrange_multiplier():
    penalty = BudgetTerm(target=1000, span=500, mode="penalty", weight=2.0)
    assert penalty(torch.tensor(900.0)).item() == 0.0
    assert penalty(torch.tensor(1250.0)).item() == pytest.approx(1.0)
    lagrange = BudgetTerm(target=1000, span=500, mode="lagrange", weight=1.0)
    assert lagrange(torch.tensor(2000.0)).item() == 0.0
    lagrange.update(torch.tensor(1500.0))
    lagrange.update(torch.tensor(1500.0))
    assert lagrange.lam == pytest.approx(2.0)
    assert lagrange(torch.tensor(1500.0)).item() == pytest.approx(2.0)
    lagrange.update(torch.tensor(0.0))
    assert lagrange.lam == 0.0

