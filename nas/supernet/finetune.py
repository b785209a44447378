"""A short fine-tune of a candidate's inherited weights before it is scored (as few-shot and
one-shot NAS papers do to reduce the supernet's ranking bias): a fixed number of AdamW steps at a
constant learning rate, the same batches for every candidate, so candidates stay comparable."""
from __future__ import annotations

import torch
from torch import nn

from search_spaces import SharingPolicy, build_model
from trainer.config import OptimConfig
from trainer.evaluation.precision import scoring_precision
from trainer.optim import build_optimizer
from trainer.step import TrainingStep

from nas.scoring import Batches


def finetune_model(model: nn.Module, batches: Batches, lr: float, optim: OptimConfig, device: torch.device) -> nn.Module:
    """Train `model` in place for one step per batch of `batches` at constant `lr` (the recipe's weight
    decay groups and gradient clipping), at the scoring precision, since it is part of scoring;
    returns it in eval mode."""
    step = TrainingStep(model, build_optimizer(model, optim), optim, lambda _: lr)
    model.train()
    with scoring_precision(device):
        for index, (images, tokens) in enumerate(batches):
            step.backward(model, (images.to(device), tokens.to(device)), index)
            step.update(index)
    return model.eval()


def finetuned_standalone(
    supernet: nn.Module, policy: SharingPolicy, batches: Batches, lr: float, optim: OptimConfig, device: torch.device
) -> nn.Module:
    """`policy`'s standalone model with the supernet's inherited weights, fine-tuned on `batches`."""
    model = build_model(policy, supernet.space.size)
    model.load_state_dict(supernet.standalone_state_dict(policy))
    return finetune_model(model.to(device), batches, lr, optim, device)
