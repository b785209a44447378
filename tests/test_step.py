"""The one training step (trainer.step.TrainingStep) that the trainer, the supernet search and the
fine-tune share: accumulation keeps the objective, the update's order (clip, learning rate, step, clamp),
and a non-finite loss stops before anything changes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainer.config import OptimConfig
from trainer.step import TrainingStep


class TwoTowers(nn.Module):
    """Linear towers over flat inputs, with CLIP's learned logit scale (log of 1/0.07)."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(12, 6)
        self.text = nn.Linear(5, 6)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        normalize = nn.functional.normalize
        return normalize(self.image(images), dim=-1), normalize(self.text(tokens), dim=-1), self.logit_scale.exp()


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(n, 12, generator=generator), torch.randn(n, 5, generator=generator)


def model_and_step(**optim) -> tuple[TwoTowers, TrainingStep]:
    torch.manual_seed(0)
    model = TwoTowers()
    cfg = OptimConfig(**{"lr": 1e-2, **optim})
    return model, TrainingStep(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr), cfg, lambda step: 1e-2 * (step + 1))


def test_accumulated_micro_batches_give_the_whole_batch_loss_and_gradients():
    whole, step_whole = model_and_step()
    value = step_whole.backward(whole, batch(), 0)
    micro, step_micro = model_and_step()
    images, tokens = batch()
    value_micro = step_micro.backward_accumulated(micro, [(images[:4], tokens[:4]), (images[4:], tokens[4:])], 0)
    assert value_micro == pytest.approx(value, rel=1e-6) and value > 0
    for (name, a), b in zip(whole.named_parameters(), micro.parameters()):
        # each micro-step carries its part of the gradient; the logit scale takes it once, in the last
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_parts_divide_the_loss_so_their_gradients_sum_to_the_mean():
    one, step_one = model_and_step()
    step_one.backward(one, batch(), 0)
    two, step_two = model_and_step()
    for _ in range(2):
        step_two.backward(two, batch(), 0, parts=2)
    assert all(torch.allclose(a.grad, b.grad, atol=1e-7) for a, b in zip(one.parameters(), two.parameters()))


def test_update_clips_sets_this_steps_learning_rate_steps_and_clamps_the_scale():
    model, step = model_and_step(grad_clip=1e-3, max_logit_scale=math.log(10.0))
    step.backward(model, batch(), 4)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    before = model.image.weight.detach().clone()
    assert step.update(4) == pytest.approx(norm, rel=1e-5) and norm > 1e-3
    assert [g["lr"] for g in step.optimizer.param_groups] == [pytest.approx(5e-2)] * len(step.optimizer.param_groups)
    assert not torch.equal(before, model.image.weight)
    assert all(p.grad is None for p in model.parameters())
    # the scale started at log(1/0.07) = 2.66 > log(10) = 2.30
    assert model.logit_scale.item() == pytest.approx(math.log(10.0))


def test_a_non_finite_loss_is_reported_before_backward_and_changes_nothing():
    model, _ = model_and_step()
    reports = []

    def stop(value: float, what: str, step: int) -> None:
        reports.append((what, step))
        raise FloatingPointError(what)

    cfg = OptimConfig(lr=1e-2)
    step = TrainingStep(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr), cfg, lambda _: 1e-2, non_finite=stop)
    images, tokens = batch()
    images[0, 0] = math.nan
    with pytest.raises(FloatingPointError):
        step.backward(model, (images, tokens), 6)
    assert reports == [("loss", 6)]
    assert all(p.grad is None for p in model.parameters())
