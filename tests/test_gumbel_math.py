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
    parse_count,
    sample_hard,
    temperature_at,
    uniform_choices,
)


def test_hard_sample_is_argmax_of_noisy_logits_with_weight_exactly_one():
    logits = torch.tensor([[0.3, -1.2], [2.0, 1.9], [-0.5, 0.5], [0.0, 0.0]], requires_grad=True)
    sample = sample_hard(logits, 0.7, torch.Generator().manual_seed(3))
    noise = gumbel_noise(logits.shape, torch.Generator().manual_seed(3))
    assert sample.choices == (logits.detach() + noise).argmax(dim=-1).tolist()
    assert torch.equal(sample.weights.detach(), torch.ones(4))


def test_straight_through_gradient_is_the_softmax_gradient_of_the_sampled_option():
    tau = 0.5
    logits = torch.tensor([[0.3, -1.2], [2.0, 1.9], [-0.5, 0.5]], requires_grad=True)
    sample = sample_hard(logits, tau, torch.Generator().manual_seed(11))
    (sample.weights * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    noise = gumbel_noise(logits.shape, torch.Generator().manual_seed(11))
    reference = logits.detach().clone().requires_grad_(True)
    probs = torch.softmax((reference + noise) / tau, dim=-1)
    picked = probs[torch.arange(3), torch.tensor(sample.choices)]
    (picked * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(logits.grad, reference.grad)
    assert logits.grad.abs().sum() > 0


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


def test_parse_count():
    assert parse_count("130M") == 130_000_000
    assert parse_count("3.94M") == 3_940_000
    assert parse_count("900k") == 900_000
    assert parse_count(12345) == 12345
    for bad in ("lots", "-3M", True):
        with pytest.raises(ValueError, match="parameter count"):
            parse_count(bad)
